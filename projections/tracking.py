"""The read models' position as a process that does not project them sees it: the tracking
table, which the worker leader moves in the same transaction as the read-model rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from adapters import readmodels
from adapters.db import Database
from adapters.loop import Loop

FRESH_FOR = 0.005  # read-your-writes polls every 5 ms: one query per poll, not one per caller
WATCH_POLL = 0.01
WATCH_GIVE_UP = 10.0  # a target the leader does not reach by then is dropped (timers remain)


class TrackedPosition:
    """The lowest tracked position of a set of projections, read at most every FRESH_FOR s."""

    def __init__(self, db: Database, names: Sequence[str]) -> None:
        self.db = db
        self.names = tuple(names)
        self._value = 0
        self._read_at = float("-inf")
        self._guard = threading.Lock()

    def get(self) -> int:
        """The position every one of the projections has reached (0 before their first)."""
        with self._guard:  # concurrent callers share one read
            if time.monotonic() - self._read_at >= FRESH_FOR:
                with self.db.reading() as cur:
                    tracked = readmodels.tracked_positions(cur)
                self._value = min(tracked.get(name, 0) for name in self.names)
                self._read_at = time.monotonic()
            return self._value


class PositionWatch:
    """Calls `reached` once the read models pass a position the change feed saw go by: how
    a process that does not project learns that another process's read models moved."""

    def __init__(self, position: Callable[[], int], reached: Callable[[], None]) -> None:
        self.position = position
        self.reached = reached
        self._target = 0
        self._since = 0.0
        self._guard = threading.Lock()
        self._loop = Loop("read-model-watch", self._tick, 1.0)

    def expect(self, position: int) -> None:
        """Call `reached` once the read models are at `position` or beyond."""
        with self._guard:
            if position <= self._target:
                return
            if self._target == 0:
                self._since = time.monotonic()
            self._target = position
        self._loop.wake()

    def _tick(self) -> float | None:
        target = self._target
        if target == 0:
            return None
        if self.position() < target and time.monotonic() - self._since < WATCH_GIVE_UP:
            return WATCH_POLL
        with self._guard:
            self._since = time.monotonic()
            if self._target == target:
                self._target = 0
        self.reached()
        return None if self._target == 0 else WATCH_POLL

    def start(self) -> None:
        """Start watching in a daemon thread."""
        self._loop.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._loop.stop()
