"""SSE: the per-process hub that fans events out, and the gapless resumable streams.

Flows (each its own task or thread):
  feed thread ──call_soon_threadsafe──► Hub.publish ──► each Subscriber's bounded buffer
  stream task: register ─► replay stored events after N ─► drain live, skipping seen ids
  sse-starlette: `: ping` every 15 s; client disconnect or server shutdown cancels the task
A subscriber whose buffer overflows is dropped: its stream ends, it reconnects with
Last-Event-ID and loses nothing, and nobody else waits for it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from uuid import UUID

from starlette.concurrency import run_in_threadpool

from adapters.db import Database
from api.envelopes import DONE_FRAME, Envelope, RunDirectory

REPLAY_BATCH = 1000


class Subscriber:
    """One stream's bounded buffer of live events."""

    def __init__(self, accepts: Callable[[Envelope], bool], capacity: int) -> None:
        self.accepts = accepts
        self.capacity = capacity
        self.items: deque[Envelope] = deque()
        self.ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def offer(self, env: Envelope) -> bool:
        """Buffer an event; False (and overflowed) when the buffer is full."""
        if len(self.items) >= self.capacity:
            self.overflowed = True
            self.ready.set()
            return False
        self.items.append(env)
        self.ready.set()
        return True

    async def take(self) -> list[Envelope]:
        """Wait for the next events; [] means the stream must end (overflow or shutdown)."""
        while not self.items and not (self.overflowed or self.closed):
            self.ready.clear()
            await self.ready.wait()
        if self.overflowed or self.closed:
            return []
        batch = list(self.items)
        self.items.clear()
        return batch


class Hub:
    """Hands every new event to the subscribers that want it; lives on the event loop."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.subscribers: set[Subscriber] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0
        self.waiters: set[asyncio.Event] = set()
        self.generation = 0  # moves on every publish or notify: a waiter can't miss one

    def subscribe(self, accepts: Callable[[Envelope], bool]) -> Subscriber:
        """Register for live events (before replaying stored ones)."""
        sub = Subscriber(accepts, self.capacity)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a subscriber."""
        self.subscribers.discard(sub)

    def publish(self, envelopes: Iterable[Envelope]) -> None:
        """Deliver a batch in position order (called on the loop thread)."""
        for env in envelopes:
            for sub in tuple(self.subscribers):
                if sub.accepts(env) and not sub.offer(env):
                    self.subscribers.discard(sub)
                    self.dropped += 1
        self._wake_waiters()

    def publish_threadsafe(self, envelopes: list[Envelope]) -> None:
        """Deliver from the feed thread."""
        self.generation += 1
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.publish, envelopes)

    def notify_threadsafe(self, _position: int | None = None) -> None:
        """Wake the waiters (long-poll claims) from another thread, if there are any.

        The generation moves first: a waiter that is not registered yet sees it moved.
        """
        self.generation += 1
        if self.waiters and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake_waiters)

    def _wake_waiters(self) -> None:
        self.generation += 1
        for waiter in self.waiters:
            waiter.set()

    def close_all(self) -> None:
        """End every stream (server shutdown)."""
        for sub in self.subscribers:
            sub.closed = True
            sub.ready.set()
        self.subscribers.clear()

    async def wait_for_news(self, timeout: float, since: int | None = None) -> None:
        """Sleep until something is published (after generation `since`) or time runs out."""
        if since is not None and self.generation != since:
            return  # news arrived while the caller was looking
        waiter = asyncio.Event()
        self.waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self.waiters.discard(waiter)


async def run_stream(
    hub: Hub, db: Database, run_id: UUID, after: int, finished: bool
) -> AsyncIterator[bytes]:
    """A run's events with sequence > after, then live ones, then `done` once it ends."""
    key = str(run_id)
    sub = hub.subscribe(lambda env: env.run_id == key)
    try:
        last = after
        while True:  # replay, and catch up again if live delivery ever shows a gap
            async for batch in _replay(db, run_id, last):
                yield b"".join(env.sse(env.sequence) for env in batch)
                last = batch[-1].sequence
                finished = finished or any(env.is_terminal for env in batch)
            if finished:
                yield DONE_FRAME
                return
            gap = ended = False
            while not (gap or ended):
                batch = await sub.take()
                if not batch:
                    return
                frames = []  # one write per batch, however many events it holds
                for env in batch:
                    if env.sequence <= last:
                        continue
                    if env.sequence != last + 1:
                        gap = True
                        break
                    frames.append(env.sse(env.sequence))
                    last = env.sequence
                    if env.is_terminal:
                        frames.append(DONE_FRAME)
                        ended = True
                        break
                if frames:
                    yield b"".join(frames)
            if ended:
                return
    finally:
        hub.unsubscribe(sub)


async def _replay(db: Database, run_id: UUID, after: int) -> AsyncIterator[list[Envelope]]:
    """A run's stored events after `after`, in batches (never an empty one)."""
    while True:
        rows = await run_in_threadpool(db.run_events, run_id, after, REPLAY_BATCH)
        if rows:
            yield [Envelope.from_row(row) for row in rows]
        if len(rows) < REPLAY_BATCH:
            return
        after = rows[-1].sequence


async def global_stream(
    hub: Hub,
    db: Database,
    directory: RunDirectory,
    after: int,
    accepts: Callable[[Envelope], bool],
) -> AsyncIterator[bytes]:
    """The caller's events in global order after a position, then live ones."""
    sub = hub.subscribe(accepts)
    try:
        last = after
        while True:
            rows = await run_in_threadpool(_stamped_after, db, directory, last)
            frames = [env.sse(env.position) for env in rows if accepts(env)]
            if frames:
                yield b"".join(frames)
            if rows:
                last = rows[-1].position
            if len(rows) < REPLAY_BATCH:
                break
        while True:
            batch = await sub.take()
            if not batch:
                return
            frames = []
            for env in batch:
                if env.position > last:
                    frames.append(env.sse(env.position))
                    last = env.position
            if frames:
                yield b"".join(frames)
    finally:
        hub.unsubscribe(sub)


def _stamped_after(db: Database, directory: RunDirectory, position: int) -> list[Envelope]:
    return [directory.stamp(Envelope.from_row(r)) for r in db.events_after(position, REPLAY_BATCH)]
