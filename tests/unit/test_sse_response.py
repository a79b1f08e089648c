"""The SSE response (api/http/sse.py) driven as an ASGI server drives it: what it writes,
and how it ends when the client leaves, stops reading, or the server stops. The client that
stops reading is a `send` that never returns (a paused transport, which a test could only
cause for real by filling socket buffers for 30 s)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.http import sse
from api.http.sse import END, PING, SseResponse


class Client:
    """The ASGI side: what the response sent, and a disconnect to give it."""

    def __init__(self, block_after: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        # body messages before every send blocks for good (-1: the start blocks too)
        self.block_after = block_after

    async def send(self, message: dict[str, Any]) -> None:
        bodies = sum(m["type"] == "http.response.body" for m in self.sent)
        body = message["type"] == "http.response.body"
        if (
            self.block_after is not None
            and bodies >= self.block_after
            and (body or self.block_after < 0)
        ):
            await asyncio.Event().wait()
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


class Frames:
    """An endless stream: `first` frames, then it waits; notes that its clean-up ran."""

    def __init__(self, first: int = 1) -> None:
        self.first = first
        self.closed = False

    async def __call__(self, _write: object) -> AsyncIterator[bytes]:
        try:
            for i in range(self.first):
                yield b"id: %d\ndata: {}\n\n" % (i + 1)
            await asyncio.Event().wait()
        finally:
            self.closed = True


def response(frames: Frames, ping: float, streams: set[Any], released: list[int]) -> SseResponse:
    return SseResponse(
        frames, {"Cache-Control": "no-cache"}, ping, lambda: released.append(1), streams
    )


async def run(resp: SseResponse, client: Client, method: str = "GET") -> None:
    await resp({"type": "http", "method": method}, client.receive, client.send)  # type: ignore[arg-type]


def test_an_idle_stream_is_pinged_and_a_disconnect_ends_it_with_its_clean_up() -> None:
    async def scenario() -> tuple[Client, Frames, list[int], set[Any]]:
        client, frames, released, streams = Client(), Frames(), [], set()
        task = asyncio.create_task(run(response(frames, 0.1, streams, released), client))
        await asyncio.sleep(0.5)
        assert len(streams) == 1
        client.gone.set()
        await asyncio.wait_for(task, 2)
        return client, frames, released, streams

    client, frames, released, streams = asyncio.run(scenario())
    start = client.sent[0]
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert (b"cache-control", b"no-cache") in start["headers"]
    bodies = client.bodies()
    assert bodies[0] == b"id: 1\ndata: {}\n\n"
    assert 2 <= bodies.count(PING) <= 6  # every ~0.1 s of silence, not more
    assert frames.closed and released == [1] and not streams


def test_a_client_that_stops_reading_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "SEND_TIMEOUT", 0.3)

    async def scenario() -> tuple[Client, Frames, list[int]]:
        client, frames, released = Client(block_after=0), Frames(first=3), []
        await asyncio.wait_for(run(response(frames, 15, set(), released), client), 3)
        return client, frames, released

    client, frames, released = asyncio.run(scenario())
    assert client.bodies() == []  # its first write never went through
    assert frames.closed and released == [1]


def test_a_client_that_reads_nothing_from_the_start_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse, "SEND_TIMEOUT", 0.3)

    async def scenario() -> tuple[Client, Frames, list[int]]:
        client, frames, released = Client(block_after=-1), Frames(), []
        await asyncio.wait_for(run(response(frames, 15, set(), released), client), 3)
        return client, frames, released

    client, frames, released = asyncio.run(scenario())
    assert client.sent == []  # not even the headers went through
    assert released == [1] and not frames.closed  # (never begun: nothing of it to clean up)


def test_shutdown_ends_the_stream_cleanly_without_done() -> None:
    async def scenario() -> tuple[Client, Frames, list[int]]:
        client, frames, released, streams = Client(), Frames(first=2), [], set()
        task = asyncio.create_task(run(response(frames, 15, streams, released), client))
        await asyncio.sleep(0.1)
        for stream in list(streams):
            stream.end("shutdown")
        await asyncio.wait_for(task, 2)
        return client, frames, released

    client, frames, released = asyncio.run(scenario())
    assert client.sent[-1] == END  # the chunked body ends: the client resumes elsewhere
    assert not any(b"done" in body for body in client.bodies())
    assert len(client.bodies()) == 3 and frames.closed and released == [1]


def test_a_head_request_gets_the_headers_and_no_stream() -> None:
    async def scenario() -> tuple[Client, Frames, list[int]]:
        client, frames, released = Client(), Frames(), []
        await asyncio.wait_for(run(response(frames, 15, set(), released), client, "HEAD"), 2)
        return client, frames, released

    client, _, released = asyncio.run(scenario())
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]
    assert client.sent[-1] == END and released == [1]


class Gate:
    """A client whose sends wait while `closed` is clear (its transport paused)."""

    def __init__(self) -> None:
        self.client = Client()
        self.open = asyncio.Event()
        self.open.set()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await self.open.wait()
        await self.client.send(message)


class Live:
    """A stream that keeps the response's `write_now` and writes what it is handed."""

    def __init__(self) -> None:
        self.write: Any = None
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def __call__(self, write: Any) -> AsyncIterator[bytes]:
        self.write = write
        while True:
            yield await self.queue.get()


def test_a_live_frame_is_written_at_once_from_outside_the_streams_task() -> None:
    async def scenario() -> None:
        gate, live = Gate(), Live()
        resp = SseResponse(live, {}, 15, lambda: None, set())
        task = asyncio.create_task(run_with(resp, gate.client.receive, gate.send))
        await asyncio.sleep(0.05)  # the headers are sent; the stream waits
        assert live.write(b"id: 1\n\n") is True
        assert gate.client.bodies() == [b"id: 1\n\n"]  # written before any task ran
        gate.client.gone.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())


def test_live_frames_go_to_the_servers_own_send_past_the_middlewares_wrappers() -> None:
    async def scenario() -> tuple[list[str], list[bytes]]:
        client, live, through = Client(), Live(), []

        async def wrapped(message: dict[str, Any]) -> None:  # a middleware's send wrapper
            through.append(message["type"])
            await client.send(message)

        resp = SseResponse(live, {}, 15, lambda: None, set())
        scope = {"type": "http", "method": "GET", sse.SERVER_SEND: client.send}
        task = asyncio.create_task(resp(scope, client.receive, wrapped))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert live.write(b"id: 1\n\n") is True  # live: straight to the server's send
        live.queue.put_nowait(b"id: 2\n\n")  # the stream's task: through the wrapper
        await asyncio.sleep(0.05)
        assert live.write(b"id: 3\n\n") is True
        client.gone.set()
        await asyncio.wait_for(task, 2)
        return through, client.bodies()

    through, bodies = asyncio.run(scenario())
    assert through == ["http.response.start", "http.response.body"]  # the start, frame 2
    assert bodies == [b"id: 1\n\n", b"id: 2\n\n", b"id: 3\n\n"]


def test_the_app_hands_a_request_the_servers_own_send() -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from api.http.app import App

    seen: list[bool] = []

    async def handler(request: Any) -> PlainTextResponse:
        seen.append(request.scope[sse.SERVER_SEND] is server_send)
        return PlainTextResponse("ok")

    app = App(routes=[Route("/", handler)])
    sent: list[dict[str, Any]] = []

    async def server_send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    asyncio.run(app(scope, receive, server_send))  # type: ignore[arg-type]
    assert seen == [True] and sent[-1]["body"] == b"ok"
    assert sse.SERVER_SEND not in scope  # taken out again: no cycle through uvicorn's cycle


def test_a_live_write_that_must_wait_keeps_its_place_before_later_writes() -> None:
    async def scenario() -> None:
        gate, live = Gate(), Live()
        resp = SseResponse(live, {}, 15, lambda: None, set())
        task = asyncio.create_task(run_with(resp, gate.client.receive, gate.send))
        await asyncio.sleep(0.05)
        gate.open.clear()  # the client stops reading
        assert live.write(b"id: 1\n\n") is True  # begun: it is finished before any other
        assert live.write(b"id: 2\n\n") is False  # so this one goes the stream's way
        live.queue.put_nowait(b"id: 2\n\n")
        await asyncio.sleep(0.05)
        assert gate.client.bodies() == []
        gate.open.set()
        await asyncio.sleep(0.05)
        assert gate.client.bodies() == [b"id: 1\n\n", b"id: 2\n\n"]
        assert live.write(b"id: 3\n\n") is True  # caught up: at once again
        assert gate.client.bodies()[-1] == b"id: 3\n\n"
        gate.client.gone.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())


def test_a_live_write_that_waits_too_long_drops_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse, "SEND_TIMEOUT", 0.3)

    async def scenario() -> list[int]:
        gate, live, released = Gate(), Live(), []
        resp = SseResponse(live, {}, 15, lambda: released.append(1), set())
        task = asyncio.create_task(run_with(resp, gate.client.receive, gate.send))
        await asyncio.sleep(0.05)
        gate.open.clear()
        assert live.write(b"id: 1\n\n") is True
        await asyncio.wait_for(task, 3)  # ended by the watch, its pending write dropped
        assert live.write(b"id: 2\n\n") is False  # the stream is gone
        assert gate.client.bodies() == []
        return released

    assert asyncio.run(scenario()) == [1]


async def run_with(resp: SseResponse, receive: Any, send: Any) -> None:
    await resp({"type": "http", "method": "GET"}, receive, send)


class Wire:
    """A socket's transport as uvicorn's connection sees it: the bytes written to it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closing = False  # uvloop's write on a closed transport raises RuntimeError

    def write(self, data: bytes) -> None:
        if self.closing:
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.data += data


def uvicorn_connection(wire: Wire) -> Any:
    """uvicorn's own httptools connection (RequestResponseCycle) over `wire`."""
    import logging

    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    return RequestResponseCycle(
        scope={"type": "http", "method": "GET", "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=wire,  # type: ignore[arg-type]
        flow=FlowControl(wire),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )


def test_under_uvicorn_a_live_frame_goes_to_the_transport_framed_as_its_send_would() -> None:
    async def scenario() -> None:
        wire, live, client = Wire(), Live(), Client()
        conn = uvicorn_connection(wire)
        assert sse.direct(conn.send) is None  # no response started: nothing to write to
        resp = SseResponse(live, {}, 15, lambda: None, set())
        task = asyncio.create_task(run_with(resp, client.receive, conn.send))
        await asyncio.sleep(0.05)
        assert sse.direct(conn.send) is conn  # started, chunked: live frames go straight
        assert sse.direct(client.send) is None  # any other server's send: the ASGI way
        assert wire.data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert wire.data.endswith(b"transfer-encoding: chunked\r\n\r\n")
        del wire.data[:]
        frame = b"id: 1\n\n"
        assert live.write(frame) is True
        assert sse._last_framed[0] is frame  # framed here: written past uvicorn's send
        assert live.write(b"id: 22\n\n") is True
        assert wire.data == b"7\r\nid: 1\n\n\r\n8\r\nid: 22\n\n\r\n"  # as uvicorn frames them
        wire.closing = True  # closing under it: the stream's task tries, and sees why
        assert live.write(b"id: 99\n\n") is False
        wire.closing = False
        conn.flow.pause_writing()  # the client stops reading: uvicorn's send waits
        assert live.write(b"id: 3\n\n") is True  # begun, finished before any other
        assert live.write(b"id: 4\n\n") is False  # the stream's task writes it in turn
        live.queue.put_nowait(b"id: 4\n\n")
        await asyncio.sleep(0.05)
        assert wire.data.endswith(b"id: 22\n\n\r\n")  # nothing more while paused
        conn.flow.resume_writing()
        await asyncio.sleep(0.05)
        assert wire.data.endswith(b"7\r\nid: 3\n\n\r\n7\r\nid: 4\n\n\r\n")
        conn.response_complete = True  # (never, while streaming): uvicorn's send refuses it
        assert live.write(b"id: 5\n\n") is False
        conn.response_complete, conn.disconnected = False, True  # gone: nothing more written
        assert live.write(b"id: 5\n\n") is True  # (uvicorn's send drops it, as before)
        assert b"id: 5" not in wire.data and b"id: 99" not in wire.data
        client.gone.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())


def test_one_watch_pings_every_stream_and_ends_with_the_last_one() -> None:
    async def scenario() -> tuple[int, list[int], list[int], bool]:
        quick = [Client() for _ in range(20)]
        slow = Client()  # pinged every 15 s: never within this test
        tasks = [asyncio.create_task(run(response(Frames(), 15, set(), []), slow))]
        await asyncio.sleep(0.01)  # its watch looks every 7.5 s, until the quick ones come
        tasks += [asyncio.create_task(run(response(Frames(), 0.1, set(), []), c)) for c in quick]
        await asyncio.sleep(0.45)
        others = len(asyncio.all_tasks()) - 1 - 2 * len(tasks)  # besides each stream's two
        for client in [*quick, slow]:
            client.gone.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        await asyncio.sleep(0.1)  # the watch's next look finds no stream, and ends
        ended = asyncio.get_running_loop() not in {w.loop for w in sse.Watch._of.values()}
        pings = [c.bodies().count(PING) for c in quick]
        return others, pings, [slow.bodies().count(PING)], ended

    others, pings, slow, ended = asyncio.run(scenario())
    assert others == 1  # one watch for all 21 streams
    assert all(2 <= n <= 6 for n in pings), pings
    assert slow == [0] and ended
