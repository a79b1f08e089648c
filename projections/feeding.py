"""Feeds the projections: catch up from their tracking positions, follow the log, rebuild.

One batch of the log is read once and applied to every projection in one transaction; each
projection writes its rows and moves its own tracking position there, and the move is
conditional on the position the feeder expected. So a crash, a rebuild or a second
process can never make an event count twice: the loser rolls back and resyncs.

In a server only the worker leader (api/leadership.py) runs it; it can be stopped when the
leadership is lost and started again when it is regained, each time from the tracking table.
(A feeder, not a "runner": runners are the agents that claim runs.)
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from adapters import readmodels
from adapters.db import Cursor, StoredRow
from adapters.loop import Loop

log = logging.getLogger("runledger.projections")
BATCH = 500


class Projection(Protocol):
    """What the feeder needs of a projection (`tables`: the read-model tables it writes,
    which a rebuild builds afresh and swaps in)."""

    name: str
    tables: tuple[str, ...]

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None: ...

    def forget(self) -> None: ...

    def reset(self, cur: Cursor) -> None: ...


class ReadModelStore(Protocol):
    """Where a feeder reads the log and writes read models: the database (adapters.db), or
    a rebuild's fresh tables beside the live ones (adapters/readmodels/rebuild.py)."""

    def reading(self) -> AbstractContextManager[Cursor]: ...

    def projecting(self) -> AbstractContextManager[Cursor]: ...

    def events_after(self, position: int, limit: int = 500) -> list[StoredRow]: ...


class ProjectionFeeder:
    """Feeds the event log to a set of projections, in a background thread or on demand."""

    def __init__(
        self, db: ReadModelStore, projections: Sequence[Projection], poll_interval: float = 1.0
    ) -> None:
        self.db = db
        self.projections = list(projections)
        self.poll_interval = poll_interval
        self.positions = self._load_positions()
        # Called once a batch has committed, before the position moves (in-memory views
        # that must never be behind the position: projections/run_documents.py).
        self.on_committed: list[Callable[[], None]] = []
        self.on_advance: list[Callable[[int], None]] = []
        self.on_rows: list[Callable[[list[StoredRow]], None]] = []
        # (after, rows): the rows are every event in (after, rows[-1].position].
        self.on_applied: list[Callable[[int, list[StoredRow]], None]] = []
        self._loop: Loop | None = None  # while following the log
        self._offered: deque[tuple[int, list[StoredRow]]] = deque()

    @property
    def position(self) -> int:
        """The position every projection has reached."""
        return min(self.positions.values())

    def _load_positions(self) -> dict[str, int]:
        with self.db.reading() as cur:
            return {p.name: readmodels.tracked_position(cur, p.name) for p in self.projections}

    def offer(self, after: int, rows: list[StoredRow]) -> None:
        """The log's events right after position `after`, as the change feed read them:
        applied without another read when they follow on from where the projections are."""
        loop = self._loop
        if rows and loop is not None:  # not following: nothing to hand the rows to
            self._offered.append((after, rows))
            loop.wake()

    def catch_up(self, up_to: int | None = None) -> int:
        """Apply every event after the tracking positions (or at least those up to
        `up_to`: a log written faster than it is read is never caught up with); returns
        the position reached."""
        self._apply_offered()
        while up_to is None or self.position < up_to:
            rows = self.db.events_after(self.position, BATCH)
            if not rows:
                break
            self._apply(rows)
        return self.position

    def _apply_offered(self) -> bool:
        """Apply the rows offered so far; False when they do not follow on (read instead).

        Offers that follow on from each other are applied together, up to BATCH rows per
        transaction: when the projections fall behind (a projection whose batch costs more
        than an event, like the board's), they catch up in fewer, larger batches instead of
        one transaction per command.
        """
        pending: list[StoredRow] = []
        while self._offered:
            after, rows = self._offered.popleft()
            reached = pending[-1].position if pending else self.position
            if rows[-1].position <= reached:
                continue
            if after > reached:
                if pending:
                    self._apply(pending)
                self._offered.clear()  # a gap between us and these rows
                return False
            pending += [row for row in rows if row.position > reached]
            if len(pending) >= BATCH:
                self._apply(pending)
                pending = []
        if pending:
            self._apply(pending)
        return True

    def _apply(self, rows: list[StoredRow]) -> None:
        """Apply every event after `self.position` up to the last of `rows` (all of them)."""
        after, target = self.position, rows[-1].position
        behind = {n: p for n, p in self.positions.items() if p < target}
        try:
            with self.db.projecting() as cur:
                for projection in self.projections:
                    if projection.name in behind:
                        expected = behind[projection.name]
                        projection.apply(cur, [r for r in rows if r.position > expected])
                if not readmodels.advance_tracking_all(cur, behind, target):
                    raise _Moved
        except _Moved:
            log.info("projections were moved by someone else; resyncing")
            self._forget()
            self.positions = self._load_positions()
            return
        except BaseException:
            self._forget()
            raise
        for committed in self.on_committed:
            committed()
        self.positions = {name: max(pos, target) for name, pos in self.positions.items()}
        for callback in self.on_advance:
            callback(target)
        for on_rows in self.on_rows:
            on_rows(rows)
        for on_applied in self.on_applied:
            on_applied(after, rows)

    def _forget(self) -> None:
        for projection in self.projections:
            projection.forget()

    def rebuild(self) -> int:
        """Empty every read model, rewind, and replay the whole log, in place: a reader
        meanwhile sees the tables half built (a running server's rebuild swaps instead,
        projections/rebuilding.py; this is the from-scratch reference tests compare with)."""
        with self.db.projecting() as cur:
            for projection in self.projections:
                projection.reset(cur)
        self._forget()
        self.positions = dict.fromkeys(self.positions, 0)
        return self.catch_up()

    def reload(self) -> None:
        """Start again from the tracking table (another process may have moved it)."""
        self._offered.clear()
        self._forget()
        self.positions = self._load_positions()

    def wake(self, _position: int | None = None) -> None:
        """Something was appended: look now rather than at the next poll."""
        if self._loop is not None:
            self._loop.wake()

    @property
    def running(self) -> bool:
        """True while following the log."""
        return self._loop is not None

    def start(self) -> None:
        """Follow the log in a daemon thread (after a `reload` if another process may have
        moved the tracking positions meanwhile)."""
        if self._loop is None:
            self._loop = Loop("projections", self._step, self.poll_interval)
            self._loop.start()

    def stop(self) -> None:
        """Stop following the log and wait for the thread."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
        self._offered.clear()

    def _step(self) -> None:
        # The change feed offers every event it delivers, in order: while its offers follow
        # on, there is nothing to read. The store is read on a gap, and on the timer.
        if not self._offered or not self._apply_offered():
            self.catch_up()


class _Moved(Exception):
    """A tracking position was not where this feeder left it."""
