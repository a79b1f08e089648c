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
        self.block_after = block_after  # body messages before every send blocks for good

    async def send(self, message: dict[str, Any]) -> None:
        bodies = sum(m["type"] == "http.response.body" for m in self.sent)
        body = message["type"] == "http.response.body"
        if body and self.block_after is not None and bodies >= self.block_after:
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

    async def __call__(self) -> AsyncIterator[bytes]:
        try:
            for i in range(self.first):
                yield b"id: %d\ndata: {}\n\n" % (i + 1)
            await asyncio.Event().wait()
        finally:
            self.closed = True


def response(frames: Frames, ping: float, streams: set[Any], released: list[int]) -> SseResponse:
    return SseResponse(
        frames(), {"Cache-Control": "no-cache"}, ping, lambda: released.append(1), streams
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
