"""The per-process hub: it fans new events out to subscribers' bounded buffers and wakes
waiters (long-poll claims) when there is news.

The change feed's thread hands it each batch (publish_threadsafe); the SSE streams
(api/http/streams.py) subscribe to it; the claim loop (api/service/claims.py) waits on it.
A subscriber whose buffer overflows is dropped: its stream ends, it reconnects with
Last-Event-ID and loses nothing, and nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from adapters import memory
from api.envelopes import Envelope

T = TypeVar("T")
# Replays read on a few threads of their own: on the shared worker pool a thousand streams
# starting together (clients reconnecting after a restart) ran on all 40 workers, and each
# of them kept a SQLite connection with its page cache and schema (about 1 MB) for good.
REPLAY_THREADS = 4
# Freed memory goes back to the OS this long after streams end, once RELEASE_AFTER of them
# ended or none is left: a full collection costs the loop tens of ms on a large heap.
RELEASE_DELAY = 1.0
RELEASE_AFTER = 32


class Stream(Protocol):
    """An open SSE response (api/http/sse.py), which the hub ends at shutdown."""

    def end(self, why: str) -> None: ...


class Subscriber:
    """One stream's bounded buffer of live events."""

    def __init__(self, accepts: Callable[[Envelope], bool], capacity: int) -> None:
        self.accepts = accepts
        self.capacity = capacity
        self.items: deque[Envelope] = deque()
        self.ready = asyncio.Event()
        self.overflowed = False
        self.closed = False
        # Set (by take) while the stream waits with nothing buffered: publish hands it each
        # event first; True means it took it (wrote it at once, or had no use for it).
        self.sink: Callable[[Envelope], bool] | None = None

    def offer(self, env: Envelope) -> bool:
        """Buffer an event; False (and overflowed) when the buffer is full."""
        if len(self.items) >= self.capacity:
            self.overflowed = True
            self.ready.set()
            return False
        self.items.append(env)
        self.ready.set()
        return True

    async def take(self, sink: Callable[[Envelope], bool] | None = None) -> list[Envelope]:
        """Wait for the next events; [] means the stream must end (overflow or shutdown).

        With `sink`, while nothing is buffered, publish hands each event to it first, and
        buffers only what it refuses (it is then set aside until the next take)."""
        if sink is not None and not self.items:
            self.sink = sink
        try:
            while not self.items and not (self.overflowed or self.closed):
                self.ready.clear()
                await self.ready.wait()
        finally:
            self.sink = None
        if self.overflowed or self.closed:
            return []
        batch = list(self.items)
        self.items.clear()
        return batch


class StreamSlots:
    """How many streams each key holds open, so that one key cannot take them all."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def take(self, key: str, limit: int) -> bool:
        """Count one more stream for the key; False (and nothing counted) at the limit."""
        held = self.open.get(key, 0)
        if held >= limit:
            return False
        self.open[key] = held + 1
        return True

    def give_back(self, key: str) -> None:
        """A stream of the key ended: its slot is free at once."""
        held = self.open.pop(key, 0) - 1
        if held > 0:
            self.open[key] = held


class Hub:
    """Hands every new event to the subscribers that want it; lives on the event loop."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.subscribers: set[Subscriber] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0
        self.waiters: set[asyncio.Event] = set()
        self.generation = 0  # moves on every publish or notify: a waiter can't miss one
        self.slots = StreamSlots()
        self.streams: set[Stream] = set()  # the open SSE responses
        self.readers = ThreadPoolExecutor(REPLAY_THREADS, thread_name_prefix="replay")
        self._ended = 0  # streams that ended since memory was last given back
        self._release_pending = False

    def subscribe(self, accepts: Callable[[Envelope], bool]) -> Subscriber:
        """Register for live events (before replaying stored ones)."""
        sub = Subscriber(accepts, self.capacity)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a subscriber (its stream ended); give memory back after a wave of ends."""
        self.subscribers.discard(sub)
        self._ended += 1
        wave = self._ended >= RELEASE_AFTER or not self.subscribers
        if wave and not self._release_pending and self.loop and not self.loop.is_closed():
            self._release_pending = True  # one release for a wave, not one per stream
            self.loop.call_later(RELEASE_DELAY, self._release)

    async def off_loop(self, read: Callable[..., T], *args: Any) -> T:
        """Run a stream's blocking read on the streams' own few threads."""
        return await asyncio.get_running_loop().run_in_executor(self.readers, read, *args)

    def _release(self) -> None:
        self._release_pending, self._ended = False, 0
        if not self.loop or self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # shutting down: all goes back soon anyway
            self.loop.run_in_executor(self.readers, memory.release)

    def publish(self, envelopes: Iterable[Envelope]) -> None:
        """Deliver a batch in position order (called on the loop thread)."""
        for env in envelopes:
            for sub in tuple(self.subscribers):
                if not sub.accepts(env):
                    continue
                sink = sub.sink
                if sink is not None:
                    if sink(env):
                        continue
                    sub.sink = None  # refused: the stream's task takes over, in order
                if not sub.offer(env):
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
        for stream in list(self.streams):
            stream.end("shutdown")
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
