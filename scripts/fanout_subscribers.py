"""bench_fanout.py's subscribers, in a process of their own (so that the writer's timing is
not theirs): lean raw-socket HTTP/1.1 clients on one event loop (uvloop), each following a
chunked SSE body up to its end and timing every event that carries its send time.

While the events flow, a subscriber only notes what arrived and when (one protocol callback
per read: the time and the bytes); the bytes are parsed once every stream has ended. A
frame's arrival is the time of the read that brought its last byte, as before, but the
client's parsing is no longer inside the figure: on 2 cores the subscribers' CPU is the
server's loss, and a reader that parsed as it went (asyncio streams, two awaits per frame)
spent 12-25 µs of its own per frame.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import resource
import time
from pathlib import Path

import uvloop

CONNECTING = 100  # subscribers connecting at once
BENCH_I = re.compile(rb'"bench_i":(\d+)')
SENT = re.compile(rb'"sent":([0-9.]+)')
HEAD_END = b"\r\n\r\n"
LAST_CHUNK = b"\r\n0\r\n\r\n"  # a chunked body's end, after its last chunk's CRLF
DONE = b"event: done"  # the writer's last frame (the bare server's stream stays open after it)
FRAME_END = (b"\n\n\r\n", b"\r\n\r\n\r\n")  # a chunk that ends with a whole frame


def subscribe(port: int, path: str, headers: dict[str, str], n: int, out: str) -> None:
    """n subscribers on `path`; writes {"connected": k} to `out`.ready once all are in,
    then, after every stream ended (or a 600 s deadline), their verdict to `out`."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    gc.disable()  # the client's own collections are not the server's latency
    # uvloop, as the server runs on: the subscribers' own reading is part of what a frame's
    # latency measures, and on 2 cores their CPU is taken from the server's.
    followers = uvloop.run(_follow_all(port, request.encode(), n, out))
    Path(out).write_text(json.dumps(_verdict(followers)))


class Follower(asyncio.Protocol):
    """One subscriber: sends its request, then notes (time, bytes) of every read."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.pieces: list[tuple[float, bytes]] = []
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tail = b""
        self.done = False  # `event: done` came: the stream ends with its frame's chunk
        self.transport: asyncio.BaseTransport | None = None
        self.lost: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # (uvloop's is not an asyncio.Transport subclass)
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.pieces.append((time.time(), data))
        head = b"".join(p for _, p in self.pieces) if not self.opened.done() else b""
        if HEAD_END in head:
            self.opened.set_result(None)
            if not head.startswith(b"HTTP/1.1 200"):
                self._end()  # refused: its head says why (the verdict reports it)
                return
        seen = self.tail + data  # (what a read split in two is found in)
        self.done = self.done or DONE in seen
        if (self.done and seen.endswith(FRAME_END)) or seen.endswith(LAST_CHUNK):
            self._end()
        self.tail = seen[-len(DONE) :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.lost = f"the connection was closed first ({exc!r})"
        self._end()

    def _end(self) -> None:
        for future in (self.opened, self.ended):
            if not future.done():
                future.set_result(None)
        if self.transport is not None:
            self.transport.close()


async def _follow_all(port: int, request: bytes, n: int, out: str) -> list[Follower]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTING)
    followers = [Follower(request) for _ in range(n)]

    async def connect(follower: Follower) -> None:
        async with gate:  # the server takes a hundred at a time, not n at once
            try:
                await loop.create_connection(lambda: follower, "127.0.0.1", port)
            except OSError as exc:
                follower.lost = f"could not connect: {exc!r}"
                follower._end()
            await follower.opened

    await asyncio.gather(*(connect(f) for f in followers))
    Path(out + ".ready").write_text(str(n))
    await asyncio.wait([f.ended for f in followers], timeout=600)
    for follower in followers:
        if not follower.ended.done():
            follower.lost = "the stream was still open after 600 s"
            follower._end()
    return followers


def _verdict(followers: list[Follower]) -> dict:
    """Every subscriber's frames, parsed now: latencies, and what was wrong."""
    samples: list[float] = []
    problems: list[str] = []
    for i, follower in enumerate(followers):
        problems += _frames(i, follower, samples)
    samples.sort()

    def pick(p: float) -> float | None:
        return samples[min(len(samples) - 1, int(p / 100 * len(samples)))] if samples else None

    return {
        "deliveries": len(samples),
        "p50": pick(50),
        "p99": pick(99),
        "max": samples[-1] if samples else None,
        "problems": problems[:20],
        "problem_count": len(problems),
    }


def _frames(i: int, follower: Follower, samples: list[float]) -> list[str]:
    """Subscriber i's chunked SSE body, read in the order its pieces came: each `log`
    event's latency (the arrival of the read that completed its chunk: the frame and the
    chunk's closing CRLF, written together), in order, up to `event: done`."""
    raw, at, body, expected = bytearray(), -1, b"", 0
    for arrived, piece in follower.pieces:
        raw += piece
        if at < 0:  # the head
            end = raw.find(HEAD_END)
            if end < 0:
                continue
            if not raw.startswith(b"HTTP/1.1 200"):
                return [f"subscriber {i}: {bytes(raw[:60])!r}"]
            at = end + len(HEAD_END)
        while True:  # every chunk complete by now
            line_end = raw.find(b"\r\n", at)
            if line_end < 0:
                break
            try:
                size = int(raw[at:line_end] or b"0", 16)
            except ValueError:  # misframed: say where, rather than lose every verdict
                return [f"subscriber {i}: a bad chunk size {bytes(raw[at:line_end][:20])!r}"]
            if size == 0:
                return [f"subscriber {i}: the stream ended without `event: done`"]
            if len(raw) < line_end + 2 + size + 2:
                break
            body += bytes(raw[line_end + 2 : line_end + 2 + size])
            at = line_end + 2 + size + 2
            *frames, body = body.replace(b"\r\n", b"\n").split(b"\n\n")
            for frame in frames:
                if DONE in frame:
                    return [] if follower.lost is None else [f"subscriber {i}: {follower.lost}"]
                found = BENCH_I.search(frame)
                if found is None:
                    continue
                number = int(found.group(1))
                if number != expected:
                    return [f"subscriber {i}: event {number} where {expected} was due"]
                expected = number + 1
                sent = SENT.search(frame)
                if sent is not None:
                    samples.append(arrived - float(sent.group(1)))
    return [f"subscriber {i}: {follower.lost or 'no `event: done`'} after {expected} events"]
