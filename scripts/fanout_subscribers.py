"""bench_fanout.py's subscribers, in a process of their own (so that the writer's timing is
not theirs): lean raw-socket HTTP/1.1 clients on one event loop (uvloop), each reading a chunked
SSE body up to `event: done` and timing every event that carries its send time."""

from __future__ import annotations

import asyncio
import json
import re
import resource
import time
from pathlib import Path

import uvloop

CONNECTING = 100  # subscribers connecting at once
BENCH_I = re.compile(rb'"bench_i":(\d+)')
SENT = re.compile(rb'"sent":([0-9.]+)')


def subscribe(port: int, path: str, headers: dict[str, str], n: int, out: str) -> None:
    """n subscribers on `path`; writes {"connected": k} to `out`.ready once all are in,
    then, after every stream ended (or a 600 s deadline), their verdict to `out`."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    # uvloop, as the server runs on: the subscribers' own reading is part of what a frame's
    # latency measures, and on 2 cores their CPU is taken from the server's.
    result = uvloop.run(_follow_all(port, request.encode(), n, out))
    Path(out).write_text(json.dumps(result))


async def _follow_all(port: int, request: bytes, n: int, out: str) -> dict:
    connected = asyncio.Event()
    count = [0]
    gate = asyncio.Semaphore(CONNECTING)
    samples: list[list[float]] = [[] for _ in range(n)]
    problems: list[str] = []

    async def one(i: int) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        count[0] += 1
        if count[0] == n:
            connected.set()
        if not head.startswith(b"HTTP/1.1 200"):
            problems.append(f"subscriber {i}: {head[:60]!r}")
            writer.close()
            return
        try:
            await _frames(reader, samples[i], problems, i)
        finally:
            writer.close()

    async def announce() -> None:
        await connected.wait()
        Path(out + ".ready").write_text(str(count[0]))

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    announcer = asyncio.create_task(announce())
    done, pending = await asyncio.wait(tasks, timeout=600)
    for task in pending:
        task.cancel()
        problems.append("a stream was still open after 600 s")
    for task in done:
        if task.exception() is not None:
            problems.append(f"a subscriber failed: {task.exception()!r}")
    announcer.cancel()
    flat = sorted(x for s in samples for x in s)
    pick = (lambda p: flat[min(len(flat) - 1, int(p / 100 * len(flat)))]) if flat else None
    return {
        "deliveries": len(flat),
        "p50": pick(50) if pick else None,
        "p99": pick(99) if pick else None,
        "max": flat[-1] if flat else None,
        "problems": problems[:20],
        "problem_count": len(problems),
    }


async def _frames(
    reader: asyncio.StreamReader, samples: list[float], problems: list[str], i: int
) -> None:
    """Read a chunked SSE body up to `event: done`: each `log` event's latency, in order."""
    buffer, expected = b"", 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            problems.append(f"subscriber {i}: the stream ended without `event: done`")
            return
        chunk = await reader.readexactly(size + 2)
        arrived = time.time()
        buffer = (buffer + chunk[:-2]).replace(b"\r\n", b"\n")
        *frames, buffer = buffer.split(b"\n\n")
        for frame in frames:
            if b"event: done" in frame:
                return
            found = BENCH_I.search(frame)
            if found is None:
                continue
            number = int(found.group(1))
            if number != expected:
                problems.append(f"subscriber {i}: event {number} where {expected} was due")
            expected = number + 1
            sent = SENT.search(frame)
            if sent is not None:
                samples.append(arrived - float(sent.group(1)))
