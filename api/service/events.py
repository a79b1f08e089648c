"""Reading the log: a run's history, and the caller's events in global order."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters import readmodels
from api.envelopes import Envelope

if TYPE_CHECKING:
    from api.service.bootstrap import Services

SCAN_LIMIT = 20_000


def run_history(
    services: Services, run_id: UUID, owner: str, after: int, limit: int
) -> dict[str, Any]:
    """Up to `limit` of the run's events after a sequence, and the run's last sequence."""
    run = services.engine.get_run(run_id, owner)
    rows = services.db.run_events(run_id, after, limit)
    events = [Envelope.from_row(r).as_dict() for r in rows]
    last = max(run.version, events[-1]["sequence"] if events else 0)
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
