"""A background loop: run a step when woken, or at least every so often; survive errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("runledger.loop")


class Loop:
    """A daemon thread that runs `tick` when woken, or after at most `interval` seconds."""

    def __init__(self, name: str, tick: Callable[[], float | None], interval: float) -> None:
        self.name, self.tick, self.interval = name, tick, interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self, _position: int | None = None) -> None:
        """Look now."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.tick()
            except Exception:
                log.exception("%s failed; retrying", self.name)
                delay = 1.0
            wait = self.interval if delay is None else max(0.0, min(delay, self.interval))
            self._wake.wait(wait)
            self._wake.clear()
