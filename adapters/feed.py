"""The change feed: one reader per process that follows the event log in commit order.

It is handed the events this process commits, as it commits them; it wakes on PostgreSQL's
NOTIFY (sent once per transaction by the event store, with the transaction's last position
as its payload, so commits by other processes arrive in well under a millisecond) and on a
poll timer (the only way to see another process's commits on SQLite). It reads the store
only when it may be missing something: a gap in what it was handed (then only the gap,
other processes' commits), a NOTIFY past what it has, or the timer. Either way it delivers
every event after the last delivered position.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections import deque
from collections.abc import Callable

from adapters.db import Database, StoredRow
from adapters.loop import Loop
from adapters.outage import Backoff

BATCH = 500
# The LISTEN connection's longest sleep: it wakes on a notification, on stop (a byte on its
# own socket pair), when the server closes the connection, or after this long (to look
# again at whether it was stopped; nothing else needs it).
LISTEN_IDLE = 30.0


class ChangeFeed:
    """Delivers batches of new events, in position order, to one callback."""

    def __init__(
        self,
        db: Database,
        deliver: Callable[[list[StoredRow]], None],
        *,
        poll_interval: float,
        start_after: int,
        settle: Callable[[], object] = lambda: None,
        others: Callable[[], object] = lambda: None,
    ) -> None:
        self.db = db
        self.deliver = deliver
        # Told when it read events committed between this process's own: others append too.
        self.others = others
        self.poll_interval = poll_interval
        self.position = start_after
        self.settle = settle  # waits (briefly) until this process's commits were offered
        self._stop = threading.Event()
        # The reader is a Loop like every other background step; on PostgreSQL its first
        # look waits for LISTEN (or the timer), so that nothing committed before the
        # LISTEN goes unread. The LISTEN connection has a thread of its own: it blocks on
        # its socket for as long as the connection lives, and it is healthy from the moment
        # it listens, not when a step ends, which is not the shape of a Loop's tick.
        self._reader = Loop("change feed", self._tick, poll_interval, at_once=not db.postgres)
        self._listener: threading.Thread | None = None
        self._nudge: tuple[socket.socket, socket.socket] | None = None  # wakes the listener
        self._offered: deque[list[StoredRow]] = deque()
        self._announced = start_after  # the highest position a NOTIFY named
        self._unsure = True  # something may have been committed that nobody named
        self._listen_backoff = Backoff("change feed LISTEN")

    def offer(self, rows: list[StoredRow]) -> None:
        """Events this process just committed, in commit order: delivered without a read
        when they follow on from the last delivered position, read from the store if not."""
        if rows:
            self._offered.append(rows)
            self._reader.wake()

    def start(self) -> None:
        """Start the reader (and on PostgreSQL the LISTEN connection)."""
        self._reader.start()
        if self.db.postgres:
            self._nudge = socket.socketpair()
            self._listener = threading.Thread(
                target=self._listen_loop, name="feed-listen", daemon=True
            )
            self._listener.start()

    def stop(self) -> None:
        """Stop both threads."""
        self._stop.set()
        self._reader.stop()
        if self._listener is not None and self._nudge is not None:
            with contextlib.suppress(OSError):  # (the listener closes it as it ends)
                self._nudge[1].send(b"!")
            self._listener.join(timeout=5)

    @property
    def failing(self) -> bool:
        """True while the feed cannot read the store (or, on PostgreSQL, cannot LISTEN)."""
        return self._reader.failing or self._listen_backoff.failing

    def _tick(self) -> None:
        """One look: after a failure (the Loop backs off) the next look reads the store."""
        if self._reader.timed_out:
            self._unsure = True  # the timer: look for other processes' commits
        try:
            self.pump()
        except Exception:
            self._unsure = True
            raise

    def pump(self) -> None:
        """Deliver everything after the last delivered position."""
        if not self._deliver_offered():
            self._read()
        elif self._behind():
            # A NOTIFY may beat the hand-over of the same commit: let that finish first
            # (briefly: a save can wait long for a lock, and then the store is read).
            self.settle()
            if not self._deliver_offered() or self._behind():
                self._read()

    def _read(self) -> None:
        self._unsure = False  # before reading: what is named after this is read next time
        while not self._stop.is_set():
            rows = self.db.events_after(self.position, BATCH)
            if not rows:
                return
            self.deliver(rows)
            self.position = rows[-1].position

    def _behind(self) -> bool:
        return self._unsure or self._announced > self.position

    def _deliver_offered(self) -> bool:
        """Deliver what was handed over, after what came in between (other processes'
        commits, read from the store: this process's own are never read back); False
        when stopped before that."""
        while self._offered:
            rows = self._offered.popleft()
            if rows[-1].position <= self.position:
                continue  # already delivered from the store
            if rows[0].position <= self.position:  # a read stopped inside them: the rest
                rows = [row for row in rows if row.position > self.position]
            if rows[0].position != self.position + 1 and not self._read_before(rows[0].position):
                self._offered.clear()
                return False
            self.deliver(rows)
            self.position = rows[-1].position
        return True

    def _read_before(self, before: int) -> bool:
        """Deliver the stored events between the last delivered position and `before`, the
        first of this process's next commit: all committed by then, since positions follow
        commit order (only a skipped number leaves a hole). False when stopped first."""
        while self.position < before - 1:
            if self._stop.is_set():
                return False
            limit = min(BATCH, before - 1 - self.position)
            rows = [
                row for row in self.db.events_after(self.position, limit) if row.position < before
            ]
            if not rows:
                break  # the rest are skipped numbers
            self.others()
            self.deliver(rows)
            self.position = rows[-1].position
        return True

    def _listen_loop(self) -> None:
        try:
            self._listen()
        finally:
            assert self._nudge is not None
            for end in self._nudge:
                end.close()

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                settings = self.db.settings
                timeout = max(2, round(settings.connect_timeout))
                with psycopg.connect(
                    settings.pg_conninfo, autocommit=True, connect_timeout=timeout
                ) as conn:
                    conn.execute(f'LISTEN "{self.db.events_channel}"')
                    self._listen_backoff.succeeded()
                    self._unsure = True  # anything committed while we were not listening
                    self._reader.wake()
                    # Asleep until the server sends something (or closes the connection)
                    # or stop nudges: psycopg's own wait for notifies wakes ten times a
                    # second, a quarter of an idle server's CPU. (poll: a process holding
                    # thousands of streams has descriptors past select's limit.)
                    assert self._nudge is not None
                    sleeper = select.poll()
                    sleeper.register(conn.fileno(), select.POLLIN)
                    sleeper.register(self._nudge[0], select.POLLIN)
                    while not self._stop.is_set():
                        # What has arrived first (psycopg keeps what came in with the
                        # LISTEN's answer), then sleep.
                        for note in conn.notifies(timeout=0):
                            if note.payload.isdigit():
                                self._announced = max(self._announced, int(note.payload))
                            else:
                                self._unsure = True
                            self._reader.wake()
                        sleeper.poll(LISTEN_IDLE * 1000)
            except Exception as exc:
                self._unsure = True
                self._stop.wait(self._listen_backoff.failed(exc))
