"""A background loop: run a step when woken, or at least every so often; survive errors.

Every background thread of runledger that works in steps runs on one: the projections, the
policies, leadership, the instance lock's upkeep and the change feed's reader."""

from __future__ import annotations

import threading
from collections.abc import Callable

from adapters.outage import Backoff


class Loop:
    """A daemon thread that runs `tick` when woken, or after at most `interval` seconds.

    The first tick comes at once, or with `at_once=False` after the first wake or interval.
    `timed_out` says whether the wait before the current tick ran its course (nobody woke
    the loop), for a tick that looks further afield when nobody named what is new.
    With `settle`, ticks come at least that many seconds apart: wakes meanwhile are
    gathered into the next tick (for a tick whose cost is mostly per call, not per item),
    unless `hurry` says that a whole tick's worth is waiting already.
    """

    def __init__(
        self,
        name: str,
        tick: Callable[[], float | None],
        interval: float,
        *,
        at_once: bool = True,
        settle: float = 0.0,
    ) -> None:
        self.name, self.tick, self.interval = name, tick, interval
        self.at_once, self.settle = at_once, settle
        self.timed_out = False
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(name)

    def wake(self, _position: int | None = None) -> None:
        """Look now."""
        self._wake.set()

    def hurry(self) -> None:
        """Look now, even before the settle has run its course."""
        self._hurry.set()
        self._wake.set()

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def failing(self) -> bool:
        """True while the last tick failed (the database is away, say)."""
        return self._backoff.failing

    def _run(self) -> None:
        if not self.at_once:
            self._pause(self.interval)
        while True:
            self._hurry.clear()  # (what hurried it is this tick's to take)
            if self._stop.is_set():  # (after the clear: stop sets _stop before _hurry)
                return
            try:
                delay = self.tick()
            except Exception as exc:
                # Back off (0.1 s doubling to 2 s) rather than hammer a database that is
                # away, and say so once, not on every attempt. Waking does not cut it short.
                self._stop.wait(self._backoff.failed(exc))
                continue
            self._backoff.succeeded()
            pause = self.interval if delay is None else max(0.0, min(delay, self.interval))
            if self.settle > 0:
                hurried = self._hurry.wait(min(self.settle, pause))
                if self._stop.is_set():
                    return
                if hurried:
                    self.timed_out = False
                    self._wake.clear()
                    continue
                pause -= self.settle
            self._pause(max(0.0, pause))

    def _pause(self, seconds: float) -> None:
        self.timed_out = not self._wake.wait(seconds)
        self._wake.clear()
