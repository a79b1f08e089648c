"""Reading the log: a run's history, and the caller's events in global order."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters import readmodels
from api.envelopes import Envelope
from domain.errors import NotFound
from domain.runs import TERMINAL, Run
from domain.topics import TERMINAL_TYPES, TYPES_BY_TOPIC

if TYPE_CHECKING:
    from api.service.bootstrap import Services

SCAN_LIMIT = 20_000
VIEW_TAIL = 1000  # events past the runs view that run_state reads at most


def run_state(services: Services, run_id: UUID, owner: str) -> tuple[bool, int]:
    """(ended, last sequence) of one of the owner's runs, for a read of its events: from the
    runs view and the few events the view may not have applied yet, not by replaying the
    run, so that reading or resuming a run's events costs what is read, whatever the run's
    length. NotFound unless the run is the owner's and not deleted (Run.check_visible_to)."""
    db = services.db
    with db.reading() as cur:
        doc = readmodels.get_run(cur, str(run_id), owner)
    tail = [] if doc is None else db.run_events(run_id, int(doc["last_sequence"]), VIEW_TAIL)
    if doc is None or len(tail) == VIEW_TAIL:
        # Not in the view (deleted, someone else's, or too new), or the view far behind.
        run = services.engine.get_run(run_id, owner)
        return run.is_terminal, run.version
    ended, version = doc["status"] in TERMINAL, int(doc["last_sequence"])
    for row in tail:
        if row.topic == Run.Deleted.TOPIC:
            raise NotFound("No such run.")
        ended = ended or TYPES_BY_TOPIC.get(row.topic) in TERMINAL_TYPES
        version = row.sequence
    return ended, version


def run_history(
    services: Services, run_id: UUID, owner: str, after: int, limit: int
) -> dict[str, Any]:
    """Up to `limit` of the run's events after a sequence, and the run's last sequence."""
    _, version = run_state(services, run_id, owner)
    rows = services.db.run_events(run_id, after, limit)
    events = [Envelope.from_row(r).as_dict() for r in rows]
    last = max(version, events[-1]["sequence"] if events else 0)
    return {"events": events, "last_sequence": last}


def scan_global(
    services: Services, owner: str, after: int, limit: int, accepts: Callable[[Envelope], bool]
) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` accepted events after a position (scanning at most SCAN_LIMIT), and
    the position the scan reached."""
    db, directory = services.db, services.directory
    # Start no earlier than the caller's own first event: a user with little or no
    # data does not pay for everyone else's history.
    with db.reading() as cur:
        start = readmodels.owner_start(cur, owner)
    found: list[dict[str, Any]] = []
    position, scanned = max(after, start), 0
    while scanned < SCAN_LIMIT:
        rows = db.events_after(position, 1000)
        for row in rows:
            env = directory.stamp(Envelope.from_row(row))
            position = env.position
            if accepts(env):
                found.append(env.as_dict())
                if len(found) == limit:
                    return found, position
        scanned += len(rows)
        if len(rows) < 1000:
            break
    return found, position
