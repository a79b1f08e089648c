"""Which process does the background work: the one holding the `worker` lock.

The projections and the policies run in exactly one process at a time. A process of role
`worker` or `all` tries to take the lock (a PostgreSQL advisory lock, or flock beside a
SQLite file) at start and then every second while it stands by; the holder asks every
second whether it still holds it, and stops its duties at once when it does not (its lock
connection dropped). The lock dies with its holder, so a standby takes over within about a
second of the holder's death.

What makes a takeover safe is not the lock but the store: every projection batch moves its
tracking position conditionally, in the same transaction as its rows, and every policy
command is idempotent (a lease is expired by its fencing token, a run merged only while it
is merging). During the second or so in which an old holder may not yet know it lost the
lock, both may work: one of two projection batches rolls back, and a repeated command
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from adapters.locks import ProcessLock
from adapters.loop import Loop

log = logging.getLogger("runledger.leadership")
LOCK_NAME = "worker"
CHECK_INTERVAL = 1.0


class Leadership:
    """Holds the worker lock when it can, and runs `promote`/`demote` as it gains or loses it."""

    def __init__(
        self,
        lock: ProcessLock,
        promote: Callable[[], None],
        demote: Callable[[], None],
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self.lock = lock
        self.promote, self.demote = promote, demote
        self.leading = False
        self._loop = Loop("leadership", self._tick, interval)

    def try_lead(self) -> bool:
        """Take the lock and the duties if the lock is free; True while leading."""
        if self.leading:
            return True
        if not self.lock.try_acquire():
            return False
        try:
            self.promote()
        except BaseException:
            self.lock.release()  # let a healthier process lead
            raise
        self.leading = True
        log.info("took the worker lock: running the projections and policies")
        return True

    def _tick(self) -> None:
        if not self.leading:
            self.try_lead()
        elif not self.lock.check():
            self._step_down("lost the worker lock; stopping the projections and policies")

    def _step_down(self, why: str) -> None:
        self.leading = False
        log.warning(why)
        self.demote()
        self.lock.release()

    def start(self) -> None:
        """Stand by (or keep leading) in a daemon thread."""
        self._loop.start()

    def stop(self) -> None:
        """Stop standing by; a leader stops its duties and lets the lock go."""
        self._loop.stop()
        if self.leading:
            self.leading = False
            self.demote()
        self.lock.release()
