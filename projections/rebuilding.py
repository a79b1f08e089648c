"""Rebuilding read models while the server serves them, and how far each one is.

A rebuild projects the whole log into fresh tables beside the live ones (a feeder of its
own, with fresh projections, so nothing the live projector holds in memory is shared),
while the live projector goes on keeping the live tables current; once the fresh tables
are close to the head, one transaction holding the read models' write lock applies the
last events to them and swaps them in (adapters/readmodels/rebuild.py). The live projector
waits only for that swap; its next batch finds the tracking moved and resyncs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from adapters import merkle_log, readmodels
from adapters.db import Database
from adapters.readmodels.rebuild import RebuildArea
from projections.feeding import Projection, ProjectionFeeder

log = logging.getLogger("runledger.projections")
CLOSE_ENOUGH = 500  # events the swap may still have to apply while it holds the lock
SWAP_ATTEMPTS = 3
CATCH_UP_PASSES = 5


def rebuild_with_swap(db: Database, projections: Sequence[Projection]) -> int:
    """Rebuild these projections' tables beside the live ones and swap them in; returns
    the position the swapped-in tables had reached."""
    tables = [table for projection in projections for table in projection.tables]
    with RebuildArea(db, tables) as area:
        feeder = ProjectionFeeder(area, projections)

        def to_head() -> int:  # each pass stops at the head it started from
            return feeder.catch_up(up_to=db.head())

        position = to_head()
        # The log grew while the first pass ran: catch up again (outside the lock) until
        # what is left for the swap is small; but only while each pass leaves less than
        # the one before: when commands come faster than a rebuild reads, more passes
        # only take longer, and the swap applies what is left.
        behind = db.head() - position
        for _ in range(CATCH_UP_PASSES):
            if behind <= CLOSE_ENOUGH:
                break
            position = to_head()
            left = db.head() - position
            if left >= behind:
                break
            behind = left
        names = [projection.name for projection in projections]
        attempt = 1
        while True:
            log.info("rebuilt %s up to %d; swapping them in", ", ".join(tables), position)
            try:
                return area.swap(to_head, names)
            except Exception as exc:
                if attempt == SWAP_ATTEMPTS or not area.busy(exc):
                    raise
                log.warning("the swap waited too long for a lock (%s); trying again", exc)
            attempt += 1
            feeder.reload()  # the swap's last events were rolled back with it
            position = to_head()


@dataclass(frozen=True)
class ReadModelStatus:
    """Where one read model (or the Merkle log) stands against the log's head."""

    name: str
    position: int | None  # None: not started
    lag: int | None
    size: int | None = None  # the Merkle log's tree size


def status(db: Database, names: Sequence[str]) -> tuple[int, list[ReadModelStatus]]:
    """The log's head, and each projection's tracked position and lag behind it, then the
    Merkle log's (position and tree size; "not started" while its tables are missing)."""
    head = db.head()
    with db.reading() as cur:
        tracked = readmodels.tracked_positions(cur)
    found = [ReadModelStatus(n, tracked.get(n, 0), head - tracked.get(n, 0)) for n in names]
    if db.has_table("merkle_head"):
        with db.reading() as cur:
            position, size = merkle_log.head(cur)
        found.append(ReadModelStatus("merkle", position, head - position, size))
    else:
        found.append(ReadModelStatus("merkle", None, None))
    return head, found
