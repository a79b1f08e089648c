"""Runs projections: catch up from the tracking position, follow the log, rebuild on demand.

Each batch writes the read-model rows and moves the tracking position in one transaction,
and the move is conditional on the position the runner expected: a crash, a rebuild or a
second worker can never make an event count twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from adapters import readmodels
from adapters.db import Cursor, Database, StoredRow

log = logging.getLogger("runledger.projections")
BATCH = 500


class Projection(Protocol):
    """What the runner needs of a projection."""

    name: str

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None: ...

    def forget(self) -> None: ...

    def reset(self, cur: Cursor) -> None: ...


class ProjectionRunner:
    """Feeds the event log to one projection, in a background thread or on demand."""

    def __init__(self, db: Database, projection: Projection, poll_interval: float = 1.0) -> None:
        self.db = db
        self.projection = projection
        self.poll_interval = poll_interval
        self.position = self._load_position()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_advance: list[Callable[[int], None]] = []

    def _load_position(self) -> int:
        with self.db.reading() as cur:
            return readmodels.tracked_position(cur, self.projection.name)

    def catch_up(self) -> int:
        """Apply every event after the tracking position; returns the position reached."""
        while True:
            rows = self.db.events_after(self.position, BATCH)
            if not rows:
                return self.position
            self._apply(rows)

    def _apply(self, rows: list[StoredRow]) -> None:
        expected, target = self.position, rows[-1].position
        try:
            with self.db.transaction() as cur:
                self.projection.apply(cur, rows)
                if not readmodels.advance_tracking(cur, self.projection.name, expected, target):
                    raise _Moved
        except _Moved:
            log.info("projection %s was moved by someone else; resyncing", self.projection.name)
            self.projection.forget()
            self.position = self._load_position()
            return
        except BaseException:
            self.projection.forget()
            raise
        self.position = target
        for callback in self.on_advance:
            callback(target)

    def rebuild(self) -> int:
        """Empty the read model, rewind, and replay the whole log."""
        with self.db.transaction() as cur:
            self.projection.reset(cur)
        self.projection.forget()
        self.position = 0
        return self.catch_up()

    def wake(self, _position: int | None = None) -> None:
        """Something was appended: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        """Follow the log in a daemon thread."""
        name = f"projection-{self.projection.name}"
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the log and wait for the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:
                log.exception("projection %s failed; retrying", self.projection.name)
                self._stop.wait(1.0)


class _Moved(Exception):
    """The tracking position was not where this runner left it."""
