"""SSE for the benchmarks: bench_spine.py's delivery latency (subscribers on one asyncio
loop in a thread, one paced writer, and the check that every subscriber got every event
once, in order), and bench_coordination.py's follower of the user's global stream."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from benchload import BenchError
from benchreport import percentile
from benchserver import (
    JSON_HEADERS,
    RUNNER_KEY,
    USER_KEY,
    Server,
    open_runs,
    report_no_changes,
    ssl_context,
)
from httpx_sse import connect_sse

# -- SSE delivery latency ----------------------------------------------------------------------


@dataclass
class SseResult:
    """Latency samples and the correctness verdict for one subscriber count."""

    latencies: list[float]
    expected_samples: int
    problems: list[str]
    write_rate: float
    post_p99: float


class _Subscribers:
    """N stream readers on one asyncio loop in a background thread; raw chunks timestamped."""

    def __init__(self, base_url: str, path: str, n: int) -> None:
        self.base_url, self.path, self.n = base_url, path, n
        self.chunks: list[list[tuple[float, bytes]]] = [[] for _ in range(n)]
        self.errors: list[str] = []
        self.all_ready = threading.Event()
        self._ready = 0
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _mark_ready(self) -> None:
        with self._lock:
            self._ready += 1
            if self._ready >= self.n:
                self.all_ready.set()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        limits = httpx.Limits(max_connections=self.n + 8, max_keepalive_connections=self.n + 8)
        timeout = httpx.Timeout(120.0, connect=30.0, pool=30.0)
        headers = {"Authorization": f"Bearer {USER_KEY}", "Accept": "text/event-stream"}
        async with httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            limits=limits,
            timeout=timeout,
            verify=ssl_context(),
        ) as client:
            await asyncio.gather(*(self._follow(client, i) for i in range(self.n)))

    async def _follow(self, client: httpx.AsyncClient, i: int) -> None:
        chunks = self.chunks[i]
        marked = False
        try:
            async with client.stream("GET", self.path) as resp:
                if resp.status_code != 200:
                    body = (await resp.aread())[:200]
                    self.errors.append(f"subscriber {i}: HTTP {resp.status_code} {body!r}")
                    return
                async for chunk in resp.aiter_raw():
                    chunks.append((time.time(), chunk))
                    if not marked:
                        marked = True
                        self._mark_ready()
        except asyncio.CancelledError:
            self.errors.append(f"subscriber {i}: stream still open at the deadline (no `done`)")
        except Exception as exc:
            self.errors.append(f"subscriber {i}: {exc!r}")
        finally:
            if not marked:
                self._mark_ready()

    def start(self) -> None:
        """Connect every subscriber (returns at once)."""
        self.thread.start()

    def finish(self, timeout: float) -> None:
        """Wait for every stream to end; cancel the ones still open after the timeout."""
        if not self.thread.is_alive():
            return
        self.thread.join(timeout)
        if self.thread.is_alive() and self.loop is not None and self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
            self.thread.join(10)


def parse_frames(chunks: list[tuple[float, bytes]]) -> list[tuple[float, dict[str, str]]]:
    """SSE frames as (arrival time of their last byte, {field: value}); comments dropped."""
    frames: list[tuple[float, dict[str, str]]] = []
    buf = b""
    for arrived, chunk in chunks:
        buf = (buf + chunk).replace(b"\r\n", b"\n")
        while (end := buf.find(b"\n\n")) >= 0:
            block, buf = buf[:end], buf[end + 2 :]
            fields: dict[str, str] = {}
            for line in block.split(b"\n"):
                if not line or line.startswith(b":"):
                    continue
                name, _, value = line.partition(b":")
                text = value[1:] if value.startswith(b" ") else value
                key = name.decode()
                joined = fields[key] + "\n" if key in fields and key == "data" else ""
                fields[key] = joined + text.decode()
            if fields:
                frames.append((arrived, fields))
    return frames


def check_stream(
    i: int, frames: list[tuple[float, dict[str, str]]], n_events: int, samples: list[float]
) -> list[str]:
    """Append subscriber i's latencies to samples; describe what is wrong with its stream."""
    problems = []
    ids = [int(f["id"]) for _, f in frames if "id" in f]
    if ids != list(range(1, len(ids) + 1)):
        problems.append(f"subscriber {i}: SSE ids not 1..n without gaps: {ids[:12]}…")
    seen: list[int] = []
    for arrived, f in frames:
        if f.get("event") != "log":
            continue
        data = orjson.loads(f["data"])["data"]
        if "bench_i" in data:
            seen.append(int(data["bench_i"]))
            samples.append(arrived - float(data["sent"]))
    if seen != list(range(n_events)):
        dup = len(seen) - len(set(seen))
        lost = sorted(set(range(n_events)) - set(seen))
        order = "in order" if seen == sorted(seen) else "OUT OF ORDER"
        problems.append(
            f"subscriber {i}: got {len(seen)} of {n_events} events ({order}), "
            f"{dup} duplicates, missing {lost[:10]}"
        )
    if not frames or frames[-1][1].get("event") != "done":
        problems.append(f"subscriber {i}: the stream did not end with `event: done`")
    return problems


def sse_latency(
    server: Server, subscribers: int, events: int, rate: float, task: str, runner_id: str
) -> SseResult:
    """One writer appends `events` single events at `rate`/s to one run; n subscribers
    follow its stream."""
    [run] = open_runs(server, 1, task, runner_id)
    run_id, token = run.run_id, run.token
    subs = _Subscribers(server.url, f"/api/runs/{run_id}/stream", subscribers)
    post_latencies: list[float] = []
    gc.collect()
    gc.disable()  # keep the client's own GC pauses out of the samples
    try:
        subs.start()
        if not subs.all_ready.wait(60):
            raise BenchError(f"only some of {subscribers} subscribers connected within 60 s")
        if subs.errors:
            raise BenchError("; ".join(subs.errors[:5]))
        time.sleep(0.2)
        path = f"/api/runs/{run_id}/events"
        with server.client(RUNNER_KEY) as writer:
            begin = time.perf_counter()
            for i in range(events):
                delay = begin + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                event = {"type": "log", "data": {"bench_i": i, "sent": time.time()}}
                body = orjson.dumps({"fencing_token": token, "events": [event]})
                t0 = time.perf_counter()
                r = writer.post(path, content=body, headers=JSON_HEADERS)
                post_latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise BenchError(f"writer: {r.status_code} {r.text[:300]}")
            elapsed = time.perf_counter() - begin
            report_no_changes(writer, run_id, token)
        subs.finish(timeout=30)
    finally:
        subs.finish(timeout=0)
        gc.enable()
    problems = list(subs.errors)
    samples: list[float] = []
    for i, chunks in enumerate(subs.chunks):
        problems += check_stream(i, parse_frames(chunks), events, samples)
    return SseResult(
        latencies=samples,
        expected_samples=subscribers * events,
        problems=problems,
        write_rate=events / elapsed,
        post_p99=percentile(post_latencies, 99),
    )


# -- the global stream, followed -------------------------------------------------------------


class Watcher:
    """The user's global SSE stream (`/api/events/stream`, these types) on a thread:
    (arrival time, envelope) per frame."""

    def __init__(self, server: Server, types: tuple[str, ...]) -> None:
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.error = ""
        self._cond = threading.Condition()
        self._client = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {USER_KEY}"},
            timeout=httpx.Timeout(30, read=None),  # a stream is quiet between frames
        )
        self._closing = False
        self._types = types
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        params = [("type", t) for t in self._types]
        try:
            with connect_sse(self._client, "GET", "/api/events/stream", params=params) as src:
                for sse in src.iter_sse():
                    if not sse.data:
                        continue  # a ping
                    frame = (time.perf_counter(), orjson.loads(sse.data))
                    with self._cond:
                        self.frames.append(frame)
                        self._cond.notify_all()
        except Exception as exc:
            if not self._closing:
                self.error = repr(exc)

    def nth(
        self, match: Callable[[dict[str, Any]], bool], n: int = 1, timeout: float = 30
    ) -> float:
        """The arrival time of the n-th frame that matches (BenchError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                times = [at for at, env in self.frames if match(env)]
                if len(times) >= n:
                    return times[n - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self.error:
                    raise BenchError(f"SSE: {len(times)} of {n} frames ({self.error or 'timeout'})")
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        """Stop following (the stream is cut)."""
        self._closing = True
        self._client.close()
        self._thread.join(5)
