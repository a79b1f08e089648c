"""The change feed: one reader per process that follows the event log in commit order.

It wakes on an in-process commit, on PostgreSQL's NOTIFY (sent once per transaction by the
event store, so commits by other processes arrive in well under a millisecond), and on a
poll timer (the only way to see another process's commits on SQLite). Whatever woke it,
it reads every event after the last position it delivered, so nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from eventsourcing.persistence import Notification

from adapters.db import Database, StoredRow

log = logging.getLogger("runledger.feed")
BATCH = 500


class ChangeFeed:
    """Delivers batches of new events, in position order, to one callback."""

    def __init__(
        self,
        db: Database,
        deliver: Callable[[list[StoredRow]], None],
        *,
        poll_interval: float,
        start_after: int,
    ) -> None:
        self.db = db
        self.deliver = deliver
        self.poll_interval = poll_interval
        self.position = start_after
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._offered: deque[list[StoredRow]] = deque()

    def offer(self, notifications: Sequence[Notification]) -> None:
        """Events this process just committed, in commit order: delivered without a read
        when they follow on from the last delivered position, read from the store if not."""
        if notifications:
            self._offered.append([StoredRow.of(n) for n in notifications])
            self._wake.set()

    def start(self) -> None:
        """Start the reader (and on PostgreSQL the LISTEN connection)."""
        self._threads.append(threading.Thread(target=self._read_loop, name="feed", daemon=True))
        if self.db.postgres:
            self._threads.append(
                threading.Thread(target=self._listen_loop, name="feed-listen", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            try:
                self.pump()
            except Exception:
                log.exception("change feed read failed; retrying")
                self._stop.wait(0.5)

    def pump(self) -> None:
        """Deliver everything after the last delivered position."""
        while self._offered:
            rows = self._offered.popleft()
            if rows[-1].position <= self.position:
                continue  # already delivered from the store
            if rows[0].position != self.position + 1:
                break  # something else came in between (or a skipped number): read it
            self.deliver(rows)
            self.position = rows[-1].position
        self._offered.clear()
        while not self._stop.is_set():
            rows = self.db.events_after(self.position, BATCH)
            if not rows:
                return
            self.deliver(rows)
            self.position = rows[-1].position

    def _listen_loop(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.db.settings.pg_conninfo, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{self.db.events_channel}"')
                    self._wake.set()  # anything committed while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake.set()
            except Exception:
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stop.wait(1.0)
