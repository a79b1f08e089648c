"""The Merkle log's writer: appends every event's hash as the next leaf, in commit order, and
signs checkpoints of the tree (docs/audit.md).

Like a projection it follows the event log from its own tracking position (`merkle_head`'s
position), a batch at a time, each batch in one transaction with the move of that position;
unlike one it is not a disposable read model: its tables survive a read-model layout change,
and `rebuild` recomputes them from the events, row for row. Only the worker leader runs it.

It never skips or reorders an event: leaves are dense ranks in position order (positions
may skip numbers on PostgreSQL), and an event that has no hash yet (stored before the hash
chain, the backfill not there yet) stops the batch before it until it has one.

The projections hand it the rows they applied (`offer`: every event after a position, with
its hash): when those follow on from its head it appends them without reading the events
again; otherwise (behind, a gap, another writer) it reads them from the store.

Checkpoints: one at once when none was ever signed (the tree as it is, empty or not), then
whenever `every_events` leaves are past the latest checkpoint, or `every_seconds` after the
first leaf past it was appended (by this writer) — so at least every N events or T seconds
when events arrived, and never when none did. A batch never crosses the next N-th leaf, so
that no more than N leaves ever separate two checkpoints; the batch that reaches it signs
in its own transaction, from the root the append computed. Every checkpoint is kept.

Its loop settles: on PostgreSQL ticks come at least a second apart (SETTLE), so that one
transaction appends the commits of a second rather than one each (on SQLite 50 ms apart,
SQLITE_SETTLE, below). An append costs about ten statements whatever its size, ~0.9 ms of
this process's CPU on PostgreSQL: at a few commands a second that was as much as the
projections' work (4 leaves a tick: 0.2 ms each), and under load
batches of 500 cost 1.4-1.8 times as much per leaf as batches of 1,000. The log is about a
second behind the projections, which nobody waits on: a run's audit proves inclusion in
the latest checkpoint, signed every 10 s or 1,000 events by default (a checkpoint due by
time comes on time, its seconds counted from its first leaf's append). Under load a whole
batch (BATCH) is handed over well within a second: then the projections hurry the loop, and
a tick before the settle has run appends whole batches only (the rest waits for the
settle), so that appends stay a batch each and, while the writer keeps up, what is handed
over does not pile up past OFFERED (with the settle alone it did at 30,000 events/s, and
the writer read them all back from the store).
Woken by the projections with every batch they apply, it polls only as a safety net (POLL,
or the server's poll interval if longer), and when a checkpoint falls due by time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast
from uuid import UUID

from adapters import audit_store, merkle_log
from adapters.audit_store import StoredCheckpoint
from adapters.checkpoints import Signer
from adapters.db import Cursor, Database
from adapters.merkle_log import Leaf, Leaves
from adapters.stored import StoredRow

log = logging.getLogger("runledger.audit")
BATCH = 1000  # leaves per transaction at most (a checkpoint's cadence cuts batches too)
SETTLE = 1.0  # s between the log loop's ticks at least: the commits of a second in one append
# On SQLite every write transaction holds the file's one write lock, which the commands'
# commits wait for; a log append that comes late, in the middle of a long fan-out (5,000
# streams' writes holding the interpreter), held it long enough to put 85-115 ms on the
# next command's delivery. There the log appends soon after the events, as before.
SQLITE_SETTLE = 0.05
# s between the log loop's ticks at most when nothing wakes it: the projections wake it
# with every batch they apply, so this is only a safety net (and idle, a query less).
POLL = 5.0
OFFERED = 20_000  # rows held from the projections at most; beyond, the writer reads instead


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _stream_keys(ids: list[UUID]) -> list[bytes]:
    """Each event's stream as its id's 16 bytes, each id's made once. The events of one
    commit share one UUID object: told apart by identity first (a UUID's own == and hash are
    Python code), then by the id's number."""
    keys: dict[int, bytes] = {}
    found: list[bytes] = []
    last, key = None, b""
    for stream in ids:
        if stream is not last:
            last, number = stream, stream.int
            known = keys.get(number)
            key = keys[number] = stream.bytes if known is None else known
        found.append(key)
    return found


class LogWriter:
    """Appends the log's leaves and signs its checkpoints; `tick` is one loop step."""

    name = "merkle-log"

    def __init__(
        self,
        db: Database,
        signer: Signer,
        every_events: int = 1000,
        every_seconds: float = 10.0,
        *,
        batch: int = BATCH,
        settle: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = _utc_now,
    ) -> None:
        if every_events < 1 or every_seconds <= 0:
            raise ValueError("checkpoints need a positive event count and interval")
        self.db, self.signer = db, signer
        self.every_events, self.every_seconds = every_events, every_seconds
        self.batch, self.settle, self.clock, self.now = batch, settle, clock, now
        self._settled_at = -math.inf  # when the last tick not before the settle began
        self._left_waiting = False  # the last tick left a part batch for the settle's end
        self._pending_since: float | None = None  # when a leaf past the checkpoint came
        self._offered: deque[tuple[int, list[StoredRow]]] = deque()
        self._offered_rows = 0
        self._offered_lock = threading.Lock()
        self._drained = False  # the last batch took every event there was to take

    @property
    def origin(self) -> str:
        """The log's name in its checkpoints: `runledger/<server id>`."""
        return self.signer.name

    def tick(self) -> float | None:
        """Append every event there is and sign what is due; seconds until the next tick is
        wanted (None: nothing waits). It stops once a batch found fewer events than it could
        take (no second transaction to find none: events arriving meanwhile wake the loop
        again, and it polls besides). A tick that comes before `settle` has passed since the
        last one that did not (the loop was hurried, a whole batch having been handed over,
        or a checkpoint falls due sooner) appends whole batches only, and asks to come back
        when the settle has run its course for the part batch it left."""
        now = self.clock()
        early = now - self._settled_at < self.settle
        self._left_waiting = False
        self._append_all(until_drained=True, whole=early)
        if not early:
            self._settled_at = now
        delays = []
        if self._pending_since is not None:  # a checkpoint due by time
            delays.append(self._pending_since + self.every_seconds - self.clock())
        if self._left_waiting:
            delays.append(self._settled_at + self.settle - self.clock())
        return max(0.0, min(delays)) if delays else None

    @property
    def full(self) -> bool:
        """A whole batch of handed-over events waits: worth a tick before the settle ends."""
        return self._offered_rows >= self.batch

    def offer(self, after: int, rows: list[StoredRow]) -> None:
        """Every event after position `after`, up to the last of `rows`, as the projections
        applied them: appended from these when they follow on from the log's head."""
        if not rows:
            return
        with self._offered_lock:
            if self._offered_rows + len(rows) > OFFERED:
                self._offered.clear()  # far behind: reading in large batches is as good
                self._offered_rows = 0
            self._offered.append((after, rows))
            self._offered_rows += len(rows)

    def _take_offered(self, position: int, limit: int) -> Leaves | None:
        """Up to `limit` offered events right after `position` as leaves; None when the
        offers do not follow on from it (the events are read from the store then)."""
        taken: list[StoredRow] = []
        reached = position
        with self._offered_lock:
            while self._offered and len(taken) < limit:
                after, rows = self._offered[0]
                if rows[-1].position <= reached:
                    self._drop_first()
                    continue
                if after > reached:  # a gap: these come later than the log's head
                    if not taken:
                        self._offered.clear()
                        self._offered_rows = 0
                    break
                start = 0
                while rows[start].position <= reached:  # rows rise: a few at most
                    start += 1
                take = rows[start : start + limit - len(taken)]
                hashes = [row.hash for row in take]
                unhashed = hashes.index(None) if None in hashes else None
                if unhashed is not None:
                    take = take[:unhashed]  # not hashed: read from the store, which waits
                taken += take
                if taken:
                    reached = taken[-1].position
                rest = rows[start + len(take) :]
                if rest:  # what is left of them stays handed over, after the last taken
                    self._offered[0] = (reached, rest)
                    self._offered_rows -= len(rows) - len(rest)
                    break
                self._drop_first()
        if not taken:
            return None
        return Leaves(
            [row.position for row in taken],
            cast(list[bytes], [row.hash for row in taken]),
            _stream_keys([row.run_id for row in taken]),
            [row.sequence for row in taken],
        )

    def _drop_first(self) -> None:
        _, rows = self._offered.popleft()
        self._offered_rows -= len(rows)

    def catch_up(self) -> int:
        """Bring the log up to the events' head, signing as it goes; the tree size."""
        self._append_all(until_drained=False)
        with self.db.reading() as cur:
            return merkle_log.size(cur)

    def _append_all(self, *, until_drained: bool, whole: bool = False) -> None:
        self.sign_if_due()  # the first checkpoint, or one due by time
        while True:
            if whole and not self.full:
                self._left_waiting = self._offered_rows > 0
                return
            if not self.step() or (until_drained and self._drained):
                return

    def step(self) -> int:
        """Append the next batch of events (one transaction, with the checkpoint that its
        last leaf makes due by count); how many were appended. Another writer appending
        meanwhile (two leaders for a moment) makes this one read the head again: the log
        takes each event once."""
        while True:
            try:
                appended = self._append_batch()
            except merkle_log.OutOfOrder:
                log.info("another writer appended to the Merkle log; reading its head again")
                continue
            if appended and self._pending_since is None:
                self._pending_since = self.clock()
            return appended

    def _append_batch(self) -> int:
        with self.db.transaction() as cur:
            position, size, signed = merkle_log.head_signed(cur)
            room = self.batch if signed is None else max(1, self.every_events - (size - signed))
            limit = min(self.batch, room)
            leaves = self._take_offered(position, limit)
            if leaves is not None:
                # Everything handed over is in: events committed since are handed over
                # (and wake the loop) once the projections have them.
                self._drained = not self._offered
            else:
                found = audit_store.event_leaves(self.db, cur, position, limit)
                self._drained = len(found) < limit
                hashed = found[: found.index(None)] if None in found else found
                if not hashed:  # (an event not hashed yet: wait for it rather than pass it)
                    return 0
                leaves = Leaves.of(cast(list[Leaf], hashed))
            new_size, root = merkle_log.append_rooted(cur, leaves, (position, size))
            appended = len(leaves.positions)
            if signed is not None and new_size - signed >= self.every_events:
                assert root is not None
                self._sign(cur, new_size, root)
            return appended

    def sign_if_due(self) -> StoredCheckpoint | None:
        """Sign the tree as it is if a checkpoint is due; the checkpoint signed, if any."""
        with self.db.reading() as cur:
            _, size, signed = merkle_log.head_signed(cur)
        if signed is not None and size <= signed:
            # Nothing new, or the log is being appended anew (after a layout change) and is
            # not yet back at the checkpoints it signed before.
            self._pending_since = None
            return None
        if signed is not None and size - signed < self.every_events:
            if self._pending_since is None:
                self._pending_since = self.clock()  # leaves another process appended
            if self.clock() - self._pending_since < self.every_seconds:
                return None
        return self.sign(size)

    def sign(self, tree_size: int) -> StoredCheckpoint:
        """Sign the tree of `tree_size` leaves and keep the checkpoint (if that size has one
        already, the one kept stays and is returned)."""
        with self.db.transaction() as cur:
            kept = self._sign(cur, tree_size, merkle_log.root(cur, tree_size))
        log.debug("signed checkpoint %s of size %d", self.origin, tree_size)
        return kept

    def _sign(self, cur: Cursor, tree_size: int, root: bytes) -> StoredCheckpoint:
        note = self.signer.sign(self.origin, tree_size, root)
        made = StoredCheckpoint(tree_size, root, note, self.signer.vkey, self.now())
        audit_store.insert_checkpoint(cur, made)
        kept = audit_store.checkpoint_at(cur, tree_size)
        assert kept is not None
        self._pending_since = None
        return kept

    def rebuild(self) -> int:
        """Empty the tree and recompute it from the events (one transaction); the size.
        The checkpoints stay: a rebuilt log must still match every one of them."""
        with self.db.transaction() as cur:
            merkle_log.reset(cur)
            while True:
                position, _ = merkle_log.head(cur)
                found = audit_store.event_leaves(self.db, cur, position, self.batch)
                leaves = []
                for leaf in found:
                    if leaf is None:
                        raise RuntimeError(
                            f"an event after position {position} has no hash yet: "
                            "let the backfill finish (start the server) first"
                        )
                    leaves.append(leaf)
                if not leaves:
                    return merkle_log.size(cur)
                merkle_log.append(cur, leaves)
