"""An SSE response that writes its frames straight to the ASGI `send`.

sse-starlette's EventSourceResponse runs four tasks per stream in a task group and puts
every send under a cancel scope of its own (`send_timeout`): on a run followed by a
thousand clients, that scope was a seventh of the server's CPU per delivery. This keeps what
it did for us, with one task per stream besides the stream itself (its wait for the
client's disconnect), and one `Watch` per event loop (per server process) that looks at
every open stream every half ping:

- **ping**: a `: ping` comment after `ping` seconds without a write (proxies and clients
  that time out an idle connection keep it), written as a live frame is;
- **a client that stops reading**: uvicorn's `send` waits while the connection's transport
  is paused (its buffer full), so a slow client holds back only its own stream; one whose
  write has waited SEND_TIMEOUT seconds is dropped (the watch notices it at its next look),
  and so is one whose buffer in the hub overflowed (api/service/hub.py). Either reconnects
  with Last-Event-ID and loses nothing;
- **disconnect**: the client going away ends the stream at once;
- **shutdown**: the hub ends every open stream (`Hub.close_all`); each finishes its chunked
  body cleanly, without `done`, so that its client resumes on another server;
- a HEAD request gets the headers and no stream.

The frames come encoded (api/http/streams.py encodes each event once for every stream).

**Live events are written from the publish itself** (`write_now`): a stream that has caught
up waits asleep, and the hub's publish hands each new event's frame straight to the ASGI
`send`, driving it by hand: when the transport is not paused, uvicorn's `send` writes and
returns without waiting, so a delivery costs one call and one socket write, no task wake.
When it would wait (the client's buffer is full), a small task finishes that write, and until
it has, later events are refused (`write_now` is False) and go to the stream's buffer, which
the stream's task writes in order as before. So the order of writes is the order of events
whichever path writes them. Those live frames go to the server's own `send`
(`scope[SERVER_SEND]`, put there by the app before its middlewares wrap it): each of the
wrappers between (Starlette's error and exception middlewares, the route's, CORS when it is
on) only watches for the response's start, which went through them, and together they were
a fifth of a delivery's CPU. A middleware that changed bodies would be passed by: there is
none (GZip, were it added, leaves `text/event-stream` alone).

**Under uvicorn's httptools protocol, a live frame goes to the connection's transport**
(`Direct`): that `send`, for a body chunk of a started chunked response, checks that the
transport is not paused and the client not gone, frames the chunk (`<size>\r\n…\r\n`) and
calls `transport.write`; the same checks, then the same write, of a chunk framed once for
every stream (the hub hands each stream the same frame in turn), cost a fifth of what
driving the coroutine did. This leans on uvicorn's connection object, which ASGI does not
promise: it is recognised by its class's module and the attributes it reads, looked up once
per stream after the response has started, and anything else (h11, another server, a
changed uvicorn) takes the ASGI `send` as before, as does any frame when the transport is
paused or the client gone (that `send` then waits, or returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from api.service.hub import Stream

log = logging.getLogger("runledger.sse")

PING = b": ping\n\n"
SEND_TIMEOUT = 30.0  # seconds one write may wait on a client that does not read
END = {"type": "http.response.body", "body": b"", "more_body": False}
SERVER_SEND = "runledger.server_send"  # the scope's key of the server's own ASGI `send`

WriteNow = Callable[[bytes], bool]  # write a frame at once; False: it cannot go now
UVICORN_HTTPTOOLS = "uvicorn.protocols.http.httptools_impl"


class Direct(Protocol):
    """What a live write reads of uvicorn's httptools connection (its RequestResponseCycle)."""

    transport: asyncio.WriteTransport
    flow: Any  # .write_paused
    disconnected: bool
    response_complete: bool
    chunked_encoding: bool | None


def direct(send: Send) -> Direct | None:
    """The uvicorn httptools connection behind `send` (its bound method), once the response
    has started chunked; None for anything else: that takes the ASGI `send`."""
    cycle = getattr(send, "__self__", None)
    if type(cycle).__module__ != UVICORN_HTTPTOOLS:
        return None
    flow = getattr(cycle, "flow", None)
    if getattr(cycle, "chunked_encoding", None) is not True or not hasattr(flow, "write_paused"):
        return None
    if not all(hasattr(cycle, a) for a in ("transport", "disconnected", "response_complete")):
        return None
    return cycle


_last_framed: tuple[bytes, bytes] = (b"", b"0\r\n\r\n")


def framed(frame: bytes) -> bytes:
    """`frame` as one HTTP/1.1 chunk; the last one is kept, as every stream writes the same
    frame in turn."""
    global _last_framed
    last, chunk = _last_framed
    if frame is not last:
        chunk = b"%x\r\n%b\r\n" % (len(frame), frame)
        _last_framed = (frame, chunk)
    return chunk


class SseResponse(Response):
    """The stream of `frames(self.write_now)` as `text/event-stream`; `release()` once it
    has ended, however it ends. (A Response as Starlette's StreamingResponse is one: its own
    __call__.)"""

    def __init__(
        self,
        frames: Callable[[WriteNow], AsyncIterator[bytes]],
        headers: Mapping[str, str],
        ping: float,
        release: Callable[[], None],
        streams: set[Stream],
    ) -> None:
        self.status_code = 200
        self.background = None
        self.frames = frames(self.write_now)
        self.ping = ping
        self.release = release
        self.streams = streams  # the open ones, for close_all
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8")] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self.ended_by = ""  # why the stream was stopped from outside: disconnect, …
        self.writing_since: float | None = None  # loop time the current write began
        self.last_write = 0.0
        self._task: asyncio.Task[None] | None = None
        self._send: Send | None = None  # set while live frames may be written at once
        self._direct: Direct | None = None  # uvicorn's connection, when writing to it directly
        self._time: Callable[[], float] = time.monotonic  # the loop's clock, once streaming
        self._finishing: asyncio.Task[None] | None = None  # a live write that had to wait

    def end(self, why: str) -> None:
        """Stop the stream from outside (the client left, or the server is stopping)."""
        if not self.ended_by and self._task is not None:
            self.ended_by = why
            self._task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        try:
            if scope.get("method") == "HEAD":
                await send(start)
                await send(END)
                return
            await self._stream(start, receive, send, scope.get(SERVER_SEND, send))
        finally:
            self.release()

    async def _stream(self, start: Message, receive: Receive, send: Send, live: Send) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self.streams.add(self)
        watcher = asyncio.create_task(self._until_disconnect(receive))
        watch = Watch.of(loop)
        try:
            self.writing_since = loop.time()
            watch.add(self)  # (a client that reads nothing is dropped from the start)
            await send(start)
            self.last_write, self.writing_since = loop.time(), None
            self._send, self._time, self._direct = live, loop.time, direct(live)
            async for chunk in self.frames:
                await self._after_live_writes()
                self.writing_since = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.last_write, self.writing_since = loop.time(), None
            await self._after_live_writes()
            await send(END)
        except asyncio.CancelledError:
            if not self.ended_by:
                raise  # the server cancelled the request itself
            assert self._task is not None
            self._task.uncancel()
            if self.ended_by == "shutdown":
                await self._end_cleanly(send)
            elif self.ended_by == "stuck":
                log.warning("a stream's client read nothing for %.0f s: dropped", SEND_TIMEOUT)
        finally:
            self._send = self._direct = None
            self.streams.discard(self)
            watch.discard(self)
            watcher.cancel()
            if self._finishing is not None:
                self._finishing.cancel()
            close = getattr(self.frames, "aclose", None)
            if close is not None:  # its clean-up (unsubscribing) now, not when collected
                await close()

    def write_now(self, chunk: bytes) -> bool:
        """Write a live chunk at once, from outside the stream's task (the hub's publish).

        False when it cannot be written now (the stream is not open, or a write is under
        way): the caller hands the event to the stream's buffer instead, and the stream's
        task writes it in turn. True means written, or (the client not reading) its write is
        begun and is finished before any other.
        """
        send = self._send
        if send is None or self.writing_since is not None or self.ended_by:
            return False
        if not chunk:
            return True  # nothing to write (an empty chunk would end the body on the wire)
        conn = self._direct
        if conn is not None and not (
            conn.flow.write_paused or conn.disconnected or conn.response_complete
        ):
            try:
                conn.transport.write(framed(chunk))
            except (OSError, RuntimeError):  # closing: the stream's task tries, and sees why
                return False
            self.last_write = self._time()
            return True
        body = {"type": "http.response.body", "body": chunk, "more_body": True}
        sending: Any = send(body)  # a coroutine, as uvicorn's send is: driven by hand
        try:
            waits_on = sending.send(None)
        except StopIteration:
            self.last_write = self._time()
            return True
        except Exception:  # nothing was written: the stream's task tries, and sees why
            return False
        loop = asyncio.get_running_loop()
        self.writing_since = loop.time()
        self._finishing = loop.create_task(self._finish(sending, waits_on))
        return True

    async def _finish(self, sending: Coroutine[Any, Any, None], waits_on: object) -> None:
        """Drive a live write that had to wait for the client, as a task drives a coroutine."""
        try:
            while True:
                if waits_on is None:  # a bare yield (sleep(0)): just let the loop turn
                    await asyncio.sleep(0)
                else:  # a future: its outcome reaches `sending` when it resumes
                    # Taken over as a task takes a future its coroutine yields (else
                    # awaiting it again is refused: "await wasn't used with future").
                    waits_on._asyncio_future_blocking = False  # type: ignore[attr-defined]
                    with contextlib.suppress(Exception):
                        await waits_on  # type: ignore[misc]
                waits_on = sending.send(None)
        except StopIteration:
            self.last_write, self.writing_since = asyncio.get_running_loop().time(), None
        except Exception:
            log.warning("a stream's write failed: it ends", exc_info=True)
            self.end("failed")
        finally:
            sending.close()  # if it was cancelled waiting: the frame was never written

    async def _after_live_writes(self) -> None:
        """Wait for a live write begun from outside (write_now) before writing after it."""
        if self._finishing is not None:
            await self._finishing
            self._finishing = None

    async def _end_cleanly(self, send: Send) -> None:
        """The closing chunk, so the client sees the stream end rather than a cut."""
        with contextlib.suppress(TimeoutError, OSError, RuntimeError):  # or it had ended
            await asyncio.wait_for(send(END), 1.0)

    async def _until_disconnect(self, receive: Receive) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                self.end("disconnect")
                return

    @property
    def tick(self) -> float:
        """How often the watch should look at this stream."""
        return (min(self.ping, SEND_TIMEOUT) if self.ping > 0 else SEND_TIMEOUT) / 2

    def look(self, now: float) -> None:
        """The watch's look: drop a client whose write has waited too long; ping when idle."""
        since = self.writing_since
        if since is not None:
            if now - since >= SEND_TIMEOUT:
                self.end("stuck")
            return  # a write is under way: the connection is not idle
        if self.ping > 0 and now - self.last_write >= self.ping:
            self.write_now(PING)  # (refused only while a write is under way: not idle)


class Watch:
    """One task per event loop that looks at every open stream every so often (pings the
    idle ones, drops the stuck ones): a task per stream woke 133 times a second for 1,000
    streams, and was a task more per stream to keep."""

    _of: dict[asyncio.AbstractEventLoop, Watch] = {}  # the loop's, while its task runs

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.streams: set[SseResponse] = set()
        self.tick = SEND_TIMEOUT / 2
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Watch:
        """The loop's watch."""
        watch = cls._of.get(loop)
        if watch is None:
            watch = cls._of[loop] = cls(loop)
        return watch

    def add(self, stream: SseResponse) -> None:
        """Watch a stream (from before its start goes out)."""
        self.streams.add(stream)
        if stream.tick < self.tick or self.task is None:
            self.tick = min(self.tick, stream.tick)
            if self.task is not None:  # a stream that wants looking at more often
                self.task.cancel()
            self.task = self.loop.create_task(self._run())

    def discard(self, stream: SseResponse) -> None:
        """Stop watching a stream (it ended); the task ends with the last one."""
        self.streams.discard(stream)

    async def _run(self) -> None:
        me = asyncio.current_task()
        try:
            while self.streams:
                await asyncio.sleep(self.tick)
                now = self.loop.time()
                for stream in list(self.streams):
                    try:
                        stream.look(now)
                    except Exception:  # one stream's trouble is not the others'
                        log.warning("a stream's watch failed", exc_info=True)
        finally:
            if self.task is me:  # (not a task that a quicker one replaced)
                self.task = None
                self.tick = SEND_TIMEOUT / 2
                if self._of.get(self.loop) is self:  # ended, or cancelled (the loop
                    del self._of[self.loop]  # closing): the next stream starts afresh
