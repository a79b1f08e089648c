"""Group commit: appends that arrive together share one transaction.

Every command ends in one append (its aggregate's new events, their chain hashes, and the
idempotent request's result). The store takes appends one transaction at a time, under one
table lock, and each transaction costs a commit (an fsync) and a NOTIFY. Appends queue;
one writer at a time writes everything queued by then as one group, in one transaction.
While a group is being written the next one gathers, so under load groups grow by
themselves.

- A thread that appends (`append`) while nobody writes writes its own group at once: a lone
  command waits for nobody. Otherwise it waits to be told its answer.
- The event loop hands an append over without waiting (`submit`) and is called back when it
  is written: a command decided on the loop costs no thread of its own.
- A writer whose own append is written, with more queued behind it, hands the writing on to
  a thread of the module's small pool, which writes until the queue is empty: one hand-over
  however many groups follow, and no client waits for other clients' groups.
- While other processes append to the same store, a group waits a moment for company
  (`others_writing`, `_gather`; at most LINGER, and not after a group of one nor after a
  pause): every transaction holds the store's table lock through its commit, so the
  processes' transactions take turns, and fewer, bigger ones cost each command less of the
  lock and of PostgreSQL's CPU.

Each append keeps its own answer: its positions, or its own failure (a version conflict,
a receipt taken over), decided by the store per append, so that one append's conflict never
fails its neighbours. A failure of the whole transaction (the database is down) is every
member's failure, as it would have been one at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain.receipts import Receipt

log = logging.getLogger("runledger.group_commit")
MAX_GROUP = 256  # appends per transaction, at most
# The longest a group waits for company while other processes append (see _gather), and
# how long after the last sign of them.
LINGER = 0.005
COMPANY_SECONDS = 1.0
# Writers that carry on after a client's own group (one at a time per GroupCommit).
_carry_on = ThreadPoolExecutor(4, thread_name_prefix="group-commit")


@dataclass(eq=False)
class Append:
    """One aggregate's next events, to be stored in one transaction with its neighbours'."""

    aggregate_id: UUID
    events: Sequence[StoredEvent]
    hashes: Sequence[tuple[bytes | None, bytes | None]] | None = None
    receipt: Receipt | None = None
    result: str | None = None  # the idempotent request's answer, stored under its receipt
    # What the store answered: the events' positions, or why it refused them.
    positions: list[int] | None = field(default=None, init=False)
    error: BaseException | None = field(default=None, init=False)
    taken: bool = field(default=False, init=False)  # a writer took it (under the queue lock)
    # Told once it is written: a waiting thread's event, or `submit`'s callback (set by
    # append or submit, so that an append written any other way costs no Event).
    written: threading.Event | Callable[[], None] | None = field(default=None, init=False)

    @property
    def first_version(self) -> int:
        """The version of the first event."""
        return self.events[0].originator_version

    def answer(self) -> list[int]:
        """The positions, or the store's refusal raised."""
        if self.error is not None:
            raise self.error
        assert self.positions is not None, "an append that was never written"
        return self.positions


class GroupCommit:
    """Writes queued appends in groups, one writer at a time.

    `write(group)` stores a group in one transaction and sets each member's positions or
    error; when it raises, the whole group failed. `committed(group)` is then told of the
    members written, in commit order, still in the writer's turn: what must follow commit
    order (the hash chain's heads, the change feed) happens there. `idle()` is called in
    the writer's turn when it leaves nothing queued: what `write` keeps from one group to
    the next (the store's connection) can be let go.
    """

    def __init__(
        self,
        write: Callable[[list[Append]], None],
        committed: Callable[[list[Append]], None],
        max_group: int = MAX_GROUP,
        idle: Callable[[], None] = lambda: None,
        linger: float = LINGER,
    ) -> None:
        self._write = write
        self._committed = committed
        self._idle = idle
        self._max_group = max_group
        self._linger = linger
        self._queue: list[Append] = []
        self._queue_lock = threading.Lock()
        self._filled = threading.Condition(self._queue_lock)  # the queue reached _wanted
        self._wanted = 0  # appends a gathering writer waits for (0: none waits)
        self._last_group = 0  # appends in the last group written
        self._quiet_since: float | None = None  # (monotonic) the writer left nothing queued
        self._company_until = 0.0  # (monotonic) other processes were seen appending
        self._writing = False  # a writer is at work, or handed on (under the queue lock)
        self.turn = threading.Lock()  # held while a group is written

    def append(self, item: Append) -> list[int]:
        """Store one append with whatever else is queued; its positions (or its error)."""
        done = item.written = threading.Event()
        if self._enqueue(item):
            self._writer(item)
        else:
            done.wait()
        return item.answer()

    def submit(self, item: Append, written: Callable[[], None]) -> None:
        """Queue an append without waiting; `written()` is called (on a writer's thread)
        once its answer is set. For the event loop: it never blocks on the store."""
        item.written = written
        if self._enqueue(item):
            self._hand_on()

    def others_writing(self) -> None:
        """Another process appended to the store (the change feed read its commits between
        this process's): for COMPANY_SECONDS from now, groups wait a moment for company
        (see _gather)."""
        self._company_until = time.monotonic() + COMPANY_SECONDS

    def _enqueue(self, item: Append) -> bool:
        """Queue it; True when nobody writes, so the caller must see that somebody does."""
        with self._queue_lock:
            self._queue.append(item)
            idle = not self._writing
            self._writing = True
            if self._wanted and len(self._queue) >= self._wanted:
                self._filled.notify()
        return idle

    def _gather(self) -> None:
        """While other processes append too, wait (at most `linger`) until as many appends
        are queued as the last group held; under the queue lock, by the writer, before it
        takes its turn (`settle` waits for a group being written, not for this).

        The processes' transactions take turns under the table lock, each holding it through
        its commit (an fsync), and each costs PostgreSQL a call, a lock and a commit: fewer
        and bigger groups cost each command less of both (PostgreSQL's own commit_delay
        waits in the same way, for its WAL flush, when other transactions are active). No
        command waits while this process appends alone, none after a group of one, and
        none after the writer had nothing to do for longer than `linger` (a burst is over).
        """
        wanted = min(self._last_group, self._max_group)
        if wanted < 2 or not self._queue or len(self._queue) >= wanted:
            return
        now = time.monotonic()
        if now >= self._company_until:
            return
        if self._quiet_since is not None and now - self._quiet_since > self._linger:
            return
        self._wanted = wanted
        try:
            self._filled.wait_for(lambda: len(self._queue) >= wanted, self._linger)
        finally:
            self._wanted = 0

    def _writer(self, own: Append | None) -> None:
        """Write groups until `own` is written (a client's thread), or until the queue is
        empty (a pool thread, `own` None); then hand on whatever is left to a pool thread."""
        more = False
        try:
            while True:
                with self._queue_lock:
                    if self._queue and not (own is not None and own.taken):
                        self._gather()
                with self.turn:
                    with self._queue_lock:
                        done = not self._queue or (own is not None and own.taken)
                        if done:
                            more = bool(self._queue)
                            self._writing = more
                            if not more:
                                self._quiet_since = time.monotonic()
                        else:
                            group = self._take()
                            self._last_group = len(group)
                            self._quiet_since = None
                    if done:
                        if not more:
                            self._let_go()
                        return
                    self._write_group(group)
        except BaseException:
            with self._queue_lock:
                more = bool(self._queue)
                self._writing = more
            raise
        finally:
            if more:
                self._hand_on()

    def _let_go(self) -> None:
        """`idle()`, in the writer's turn: its failure is logged, never an append's."""
        try:
            self._idle()
        except Exception:
            log.exception("the group commit's idle callback failed")

    def _hand_on(self) -> None:
        """A pool thread writes what is queued (this one, if the pool has shut down)."""
        try:
            _carry_on.submit(self._writer, None)
        except RuntimeError:  # the interpreter is exiting
            self._writer(None)

    def _take(self) -> list[Append]:
        """The next group: the queue in order, one append per aggregate (a second one of
        the same aggregate, at the same version or the next, waits for the next group)."""
        group: list[Append] = []
        rest: list[Append] = []
        aggregates: set[UUID] = set()
        for a in self._queue:
            if len(group) < self._max_group and a.aggregate_id not in aggregates:
                aggregates.add(a.aggregate_id)
                a.taken = True
                group.append(a)
            else:
                rest.append(a)
        self._queue = rest
        return group

    @property
    def queued(self) -> int:
        """Appends waiting for a writer."""
        with self._queue_lock:
            return len(self._queue)

    def settle(self, timeout: float) -> bool:
        """Wait (up to `timeout`) for the group being written, if any; False if it still is."""
        if not self.turn.acquire(timeout=timeout):
            return False
        self.turn.release()
        return True

    def _write_group(self, group: list[Append]) -> None:
        failure: BaseException | None = None
        try:
            self._write(group)
        except BaseException as error:  # the transaction failed: every member with it
            failure = error
            for a in group:
                if a.positions is None:  # (a retry may have found some stored before)
                    a.error = error
        try:
            written = [a for a in group if a.positions is not None]
            if written:
                self._committed(sorted(written, key=lambda a: a.answer()[0]))
        finally:
            for a in group:
                # Let go of the callback: it holds the append (submit's caller keeps it to
                # read the answer), a cycle that only the garbage collector would break.
                done, a.written = a.written, None
                if isinstance(done, threading.Event):
                    done.set()
                elif done is not None:
                    try:
                        done()
                    except Exception:  # one caller's callback never fails the others'
                        log.exception("a group commit's callback failed")
        if failure is not None and not isinstance(failure, Exception):
            raise failure
