#!/usr/bin/env python3
"""Benchmark the spine over real HTTP, on SQLite and PostgreSQL, against raw database baselines.

For each store, in one run, it starts `runledger serve` in a subprocess and measures:

1. single-event command throughput: `POST /api/runs/{id}/events` carrying one runner event,
   with 1 and 16 clients, each client on its own claimed run (plus 16 clients on one run);
2. SSE delivery latency (the writer's clock before the POST → the subscriber's clock when the
   frame arrives) for 1 and 100 subscribers of one run's stream, checking that every
   subscriber got every event exactly once and in order;
3. the raw baselines with the server stopped: one `INSERT; COMMIT` per event, on PostgreSQL
   under `LOCK TABLE … IN EXCLUSIVE MODE` (the event store's lock), on SQLite in a WAL file,
   with 1 and 16 connections; each HTTP throughput figure is printed as a ratio of these.

    .venv/bin/python scripts/bench_spine.py [--quick] [--duration 5] [--stores sqlite,postgres]

Progress goes to stderr, the report to stdout. The exit status is 1 when a measurement failed
or a correctness check (errors, lost, duplicated or reordered events) printed a warning, and
130 when interrupted (servers, schemas and temporary files are cleaned up first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

USER_KEY, RUNNER_KEY = "ka", "kr"
API_KEYS = f"{USER_KEY}=alice:user,{RUNNER_KEY}=runner-1:runner"
DEFAULT_PG_URL = os.environ.get(
    "RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
JSON_HEADERS = {"Content-Type": "application/json"}
STATE = os.urandom(100).hex().encode()  # 200 bytes: about one stored runner event
TOPIC = "bench.events:Recorded"
MAX_CONSECUTIVE_ERRORS = 50

Op = Callable[[], None]
STOP = threading.Event()  # set on SIGINT/SIGTERM: workers stop at once


class BenchError(RuntimeError):
    """A measurement could not be taken."""


@dataclass(frozen=True)
class Plan:
    """How long and how hard to push."""

    duration: float
    warmup: float
    clients: tuple[int, ...]
    subscribers: tuple[int, ...]
    sse_events: int
    sse_rate: float
    one_run: bool
    notify_variant: bool


@dataclass
class Row:
    """One line of the result table."""

    store: str
    measure: str
    concurrency: str
    value: str
    baseline: str = "-"
    ratio: str = "-"
    notes: str = ""


@dataclass
class Measured:
    """Operations completed inside the timed window, with their latencies."""

    count: int
    seconds: float
    errors: int
    latencies: list[float]
    first_error: str = ""
    total: int = 0  # every op that succeeded, warm-up and tail included

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Report:
    """Everything to print at the end."""

    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    server_findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Record a correctness warning and show it at once."""
        self.warnings.append(message)
        progress(f"WARNING: {message}")


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an unsorted list (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds with two significant decimals."""
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.2f} ms"


def fmt_rate(rate: float) -> str:
    """Operations per second, rounded."""
    return f"{rate:,.0f} ev/s"


# -- the load harness ------------------------------------------------------------------------


def timed_workers(
    n: int, open_worker: Callable[[int], tuple[Op, Op]], warmup: float, duration: float
) -> Measured:
    """n threads doing one op after another; count the ops that finish inside the window."""
    # open_worker(i) gives thread i its (op, close); an op raises on failure. Every thread
    # warms up for `warmup` seconds, then ops finishing in the next `duration` s are counted.
    barrier = threading.Barrier(n + 1)  # every worker is set up (clients made, connected)
    go = threading.Event()  # the window is fixed: start
    window: list[float] = []
    results: list[Measured | None] = [None] * n
    setup_errors: list[str] = []

    def thread(i: int) -> None:
        try:
            op, close = open_worker(i)
        except Exception as exc:
            setup_errors.append(f"worker {i} setup: {exc!r}")
            barrier.abort()
            return
        count = errors = consecutive = total = 0
        latencies: list[float] = []
        first_error = ""
        try:
            barrier.wait()
            go.wait()
            begin, end = window
            while True:
                started = time.perf_counter()
                if started >= end or STOP.is_set():
                    break
                try:
                    op()
                except Exception as exc:
                    errors += 1
                    consecutive += 1
                    first_error = first_error or repr(exc)
                    if consecutive >= MAX_CONSECUTIVE_ERRORS:
                        break
                    continue
                consecutive = 0
                total += 1
                finished = time.perf_counter()
                if begin <= finished <= end:
                    count += 1
                    latencies.append(finished - started)
        except threading.BrokenBarrierError:
            return
        finally:
            close()
        results[i] = Measured(count, end - begin, errors, latencies, first_error, total)

    threads = [threading.Thread(target=thread, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=120)
    except threading.BrokenBarrierError:
        raise BenchError("; ".join(setup_errors) or "workers did not start") from None
    start = time.perf_counter()
    window.extend([start + warmup, start + warmup + duration])
    go.set()
    for t in threads:
        t.join(warmup + duration + 60)
    done = [r for r in results if r is not None]
    if len(done) != n:
        raise BenchError(f"{n - len(done)} of {n} workers did not finish")
    return Measured(
        count=sum(r.count for r in done),
        seconds=duration,
        errors=sum(r.errors for r in done),
        latencies=[x for r in done for x in r.latencies],
        first_error=next((r.first_error for r in done if r.first_error), ""),
        total=sum(r.total for r in done),
    )


def describe(m: Measured) -> str:
    """Latency and error notes for a throughput row."""
    text = (
        f"lat p50 {fmt_ms(percentile(m.latencies, 50))} p99 {fmt_ms(percentile(m.latencies, 99))}"
    )
    if m.errors:
        text += f"; {m.errors} errors, first: {m.first_error[:120]}"
    return text


# -- raw baselines ---------------------------------------------------------------------------


def pg_baseline(conninfo: str, schema: str, n: int, plan: Plan, notify: bool = False) -> Measured:
    """One `LOCK TABLE … IN EXCLUSIVE MODE; INSERT; [NOTIFY;] COMMIT` per event, n connections."""
    import psycopg
    from psycopg import sql

    table = sql.Identifier(schema, "bench_events")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
                " topic text, state bytea, notification_id bigserial,"
                " PRIMARY KEY (originator_id, originator_version))"
            ).format(table)
        )
        conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (notification_id ASC)").format(table))
    lock = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table)
    insert = sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state)"
        " VALUES (%s, %s, %s, %s) RETURNING notification_id"
    ).format(table)
    channel = sql.SQL("NOTIFY {}").format(sql.Identifier(f"{schema}_bench_events"))

    def open_worker(_: int) -> tuple[Op, Op]:
        conn = psycopg.connect(conninfo)
        cur = conn.cursor()
        originator = uuid.uuid4()
        version = [0]

        def op() -> None:
            version[0] += 1
            cur.execute(lock, prepare=True)
            cur.execute(insert, (originator, version[0], TOPIC, STATE), prepare=True)
            cur.fetchone()
            if notify:
                cur.execute(channel)
            conn.commit()

        return op, conn.close

    try:
        return timed_workers(n, open_worker, plan.warmup, plan.duration)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def sqlite_baseline(path: Path, n: int, plan: Plan) -> Measured:
    """One `BEGIN IMMEDIATE; INSERT; COMMIT` per event on a WAL file from n threads."""
    path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE bench_events (originator_id TEXT, originator_version INTEGER,"
            " topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
        )

    def open_worker(_: int) -> tuple[Op, Op]:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        originator = uuid.uuid4().hex
        version = [0]

        def op() -> None:
            version[0] += 1
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO bench_events VALUES (?, ?, ?, ?)",
                    (originator, version[0], TOPIC, STATE),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return op, conn.close

    try:
        return timed_workers(n, open_worker, plan.warmup, plan.duration)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- the server ------------------------------------------------------------------------------


@cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: httpx builds a new one per client (~0.1 s each)."""
    return ssl.create_default_context()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`runledger serve` in a subprocess on a free port, its output kept for diagnosis."""

    def __init__(self, database_url: str, data_dir: Path, poll_interval: float | None) -> None:
        self.database_url = database_url
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLEDGER_")}
        env.update(
            RUNLEDGER_API_KEYS=API_KEYS,
            RUNLEDGER_DATA_DIR=str(data_dir),
            RUNLEDGER_LEASE_SECONDS="3600",  # no lease expires mid-benchmark
        )
        if poll_interval is not None:
            env["RUNLEDGER_POLL_INTERVAL"] = str(poll_interval)
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._pump: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait for its readiness line."""
        cmd = [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, "--database", self.database_url],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if "ready on" in line:
                    ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("server did not start:\n" + "".join(self.output[-40:]))

    def check_alive(self) -> None:
        """Raise when the server process has exited."""
        if self.proc is None or self.proc.poll() is not None:
            tail = "".join(self.output[-40:])
            raise BenchError(f"server exited unexpectedly:\n{tail}")

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._pump is not None:
            self._pump.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def findings(self) -> list[str]:
        """Problems in the log: ERROR/WARNING lines and each traceback's exception, counted."""
        found: dict[str, int] = {}
        in_traceback = False
        for raw in self.output:
            line = raw.rstrip()
            if line.startswith("Traceback"):
                in_traceback = True
                continue
            if in_traceback:
                if line.startswith((" ", "\t")) or not line:
                    continue
                in_traceback = False
                key = f"exception: {line}"
            elif any(m in line for m in (" ERROR ", " CRITICAL ", " WARNING ", "ERROR:")):
                key = line.split(" ", 2)[-1] if line[:1].isdigit() else line
            else:
                continue
            found[key] = found.get(key, 0) + 1
        return [f"{n}x {key}" for key, n in found.items()]

    def cpu_seconds(self) -> float:
        """User+system CPU the server process has used so far (Linux /proc)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def client(self, key: str, **kw: Any) -> httpx.Client:
        """A sync HTTP client speaking with one key."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            verify=ssl_context(),
            **kw,
        )


def open_runs(server: Server, n: int) -> list[tuple[str, int]]:
    """Submit n runs as the user, claim them all as the runner: [(run_id, fencing_token)]."""
    wanted: list[str] = []
    with server.client(USER_KEY) as user:
        for i in range(n):
            r = user.post("/api/runs", json={"task": f"benchmark run {i}"})
            if r.status_code != 202:
                raise BenchError(f"submit: {r.status_code} {r.text[:300]}")
            wanted.append(r.json()["run_id"])
    tokens: dict[str, int] = {}
    with server.client(RUNNER_KEY) as runner:
        while len(tokens) < n:
            r = runner.post("/api/runner/claim", json={"runner_id": "bench", "wait_seconds": 10})
            if r.status_code != 200:
                raise BenchError(f"claim: {r.status_code} {r.text[:300]}")
            lease = r.json()
            tokens[lease["run"]["run_id"]] = int(lease["fencing_token"])
    missing = [run_id for run_id in wanted if run_id not in tokens]
    if missing:
        raise BenchError(f"claimed other runs than submitted: {missing}")
    return [(run_id, tokens[run_id]) for run_id in wanted]


def http_throughput(server: Server, targets: list[tuple[str, int]], plan: Plan) -> Measured:
    """One single-event `POST /api/runs/{id}/events` after another from each client."""

    def open_worker(i: int) -> tuple[Op, Op]:
        run_id, token = targets[i]
        client = server.client(RUNNER_KEY)
        path = f"/api/runs/{run_id}/events"
        n = [0]

        def op() -> None:
            n[0] += 1
            event = {"type": "log", "data": {"line": "benchmark output line", "n": n[0]}}
            body = orjson.dumps({"fencing_token": token, "events": [event]})
            r = client.post(path, content=body, headers=JSON_HEADERS)
            if r.status_code != 200:
                raise BenchError(f"{r.status_code} {r.text[:200]}")

        return op, client.close

    return timed_workers(len(targets), open_worker, plan.warmup, plan.duration)


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


def sse_latency(server: Server, subscribers: int, plan: Plan) -> SseResult:
    """One writer appends paced single events to one run; n subscribers follow its stream."""
    [(run_id, token)] = open_runs(server, 1)
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
            for i in range(plan.sse_events):
                delay = begin + i / plan.sse_rate - time.perf_counter()
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
            r = writer.post(
                f"/api/runs/{run_id}/report", json={"fencing_token": token, "outcome": "no_changes"}
            )
            if r.status_code != 200:
                raise BenchError(f"report: {r.status_code} {r.text[:300]}")
        subs.finish(timeout=30)
    finally:
        subs.finish(timeout=0)
        gc.enable()
    problems = list(subs.errors)
    samples: list[float] = []
    for i, chunks in enumerate(subs.chunks):
        problems += check_stream(i, parse_frames(chunks), plan.sse_events, samples)
    return SseResult(
        latencies=samples,
        expected_samples=subscribers * plan.sse_events,
        problems=problems,
        write_rate=plan.sse_events / elapsed,
        post_p99=percentile(post_latencies, 99),
    )


# -- one store ---------------------------------------------------------------------------------


def cpu_mark(server: Server | None) -> tuple[float, float, float]:
    """(wall clock, this process's CPU, the server's CPU) now."""
    return time.perf_counter(), time.process_time(), server.cpu_seconds() if server else 0.0


def cpu_text(
    before: tuple[float, float, float],
    after: tuple[float, float, float],
    per: tuple[int, str] | None = None,
) -> str:
    """CPU between two marks: % of a core (server, benchmark), server CPU per unit of `per`."""
    # CPU per command or event is distorted far less than rates by load elsewhere on the box.
    wall = max(after[0] - before[0], 1e-9)
    bench = 100 * (after[1] - before[1]) / wall
    if not (after[2] or before[2]):
        return f"cpu bench {bench:.0f}%"
    server = after[2] - before[2]
    text = f"cpu srv {100 * server / wall:.0f}% bench {bench:.0f}%"
    if per and per[0]:
        text += f", srv {1000 * server / per[0]:.1f} ms CPU/{per[1]}"
    return text


def bench_store(
    store: str, url: str, tmp: Path, plan: Plan, args: argparse.Namespace, report: Report
) -> None:
    """Baselines, then the server's throughput and SSE latency, for one store."""
    baselines: dict[int, float] = {}
    variants = [False, True] if store == "postgres" and plan.notify_variant else [False]
    for notify in variants:
        for n in plan.clients:
            progress(f"{store}: baseline{' with NOTIFY' if notify else ''}, {n} connection(s)")
            mark = cpu_mark(None)
            if store == "postgres":
                from adapters.store import StoreSettings

                settings = StoreSettings.from_url(url)
                m = pg_baseline(settings.pg_conninfo, settings.pg_schema, n, plan, notify)
                name = "raw LOCK+INSERT+NOTIFY+COMMIT" if notify else "raw LOCK+INSERT+COMMIT"
            else:
                m = sqlite_baseline(tmp / "baseline.db", n, plan)
                name = "raw INSERT+COMMIT (WAL)"
            if not notify:
                baselines[n] = m.rate
            notes = f"{describe(m)}; {cpu_text(mark, cpu_mark(None))}"
            report.rows.append(Row(store, name, str(n), fmt_rate(m.rate), notes=notes))
            if m.errors:
                report.warn(f"{store} baseline ({n}): {m.errors} errors, first: {m.first_error}")

    server = Server(url, tmp / "data", args.poll_interval)
    progress(f"{store}: starting runledger serve ({url})")
    try:
        server.start()
        with server.client(USER_KEY) as c:
            info = c.get("/api/server/info").json()
        if info.get("store") != store:
            raise BenchError(f"server says store {info.get('store')!r}, expected {store!r}")

        cases = [(n, False) for n in plan.clients]
        if plan.one_run:
            cases.append((max(plan.clients), True))
        for n, shared in cases:
            progress(f"{store}: HTTP throughput, {n} client(s){' on ONE run' if shared else ''}")
            targets = open_runs(server, 1 if shared else n)
            mark = cpu_mark(server)
            m = http_throughput(server, targets * n if shared else targets, plan)
            cpu = cpu_text(mark, cpu_mark(server), (m.total, "cmd"))
            server.check_alive()
            base = baselines.get(n, math.nan)
            measure = "POST events, 1 event/cmd" + (", ONE run" if shared else "")
            report.rows.append(
                Row(
                    store,
                    measure,
                    str(n),
                    fmt_rate(m.rate),
                    fmt_rate(base),
                    f"{m.rate / base:.2f}" if base else "n/a",
                    f"{describe(m)}; {cpu}",
                )
            )
            if m.errors:
                report.warn(f"{store} {measure} ({n} clients): {m.errors} errors: {m.first_error}")
            if m.count == 0:
                report.warn(f"{store} {measure} ({n} clients): no command finished in the window")

        for n in plan.subscribers:
            progress(f"{store}: SSE latency, {n} subscriber(s), {plan.sse_events} events")
            mark = cpu_mark(server)
            s = sse_latency(server, n, plan)
            cpu = cpu_text(mark, cpu_mark(server), (plan.sse_events, "event"))
            server.check_alive()
            ok = not s.problems and len(s.latencies) == s.expected_samples
            notes = (
                f"n={len(s.latencies)}/{s.expected_samples}, max {fmt_ms(max(s.latencies))}, "
                f"write {s.write_rate:.0f}/s (POST p99 {fmt_ms(s.post_p99)}), "
                f"{'exactly once, in order' if ok else 'PROBLEMS, see warnings'}; {cpu}"
                if s.latencies
                else "no samples"
            )
            for pct in (50, 99):
                value = fmt_ms(percentile(s.latencies, pct))
                report.rows.append(Row(store, f"SSE latency p{pct}", str(n), value, notes=notes))
            if s.write_rate < 0.9 * plan.sse_rate:
                report.notes.append(
                    f"{store} SSE ({n} subscribers): the writer reached {s.write_rate:.0f} of "
                    f"{plan.sse_rate:g} events/s because each POST took longer (p99 "
                    f"{fmt_ms(s.post_p99)}) than the pace allows"
                )
            for problem in s.problems[:10]:
                report.warn(f"{store} SSE ({n} subscribers): {problem}")
            if len(s.problems) > 10:
                report.warn(f"{store} SSE ({n} subscribers): … {len(s.problems) - 10} more")
        with server.client(USER_KEY) as c:
            diag = c.get("/api/diagnostics").json()
        if diag.get("subscribers_dropped"):
            report.warn(f"{store}: server dropped {diag['subscribers_dropped']} slow subscribers")
    finally:
        code = server.stop()
        if code == -signal.SIGTERM:
            report.notes.append(
                f"{store}: the server's exit status after SIGTERM was -15 (killed by the signal"
                " uvicorn re-raises after its graceful shutdown), not 0"
            )
        elif code not in (0, None):
            report.warn(f"{store}: server exited with code {code} on SIGTERM")
        report.server_findings += [f"{store}: {line}" for line in server.findings()]


# -- machine facts and main ------------------------------------------------------------------


def filesystem_of(path: Path) -> str:
    """The filesystem type holding a path (from /proc/mounts)."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def cpu_model() -> str:
    """The CPU model name, when Linux says."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def postgres_facts(pg_url: str) -> str:
    """Server version and durability settings of the PostgreSQL at pg_url."""
    import psycopg

    from adapters.store import StoreSettings

    settings = StoreSettings.from_url(pg_url)
    with psycopg.connect(settings.pg_conninfo, connect_timeout=5) as conn:
        values = [
            conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("server_version", "synchronous_commit", "fsync", "max_connections")
        ]
    where = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_dbname}"
    return (
        f"PostgreSQL {values[0]} at {where} (synchronous_commit={values[1]}, fsync={values[2]},"
        f" max_connections={values[3]})"
    )


@contextlib.contextmanager
def postgres_schema(pg_url: str) -> Iterator[str]:
    """A URL pointing at a fresh schema, dropped afterwards whatever happens."""
    import psycopg

    from adapters.store import StoreSettings

    conninfo = StoreSettings.from_url(pg_url).pg_conninfo
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}schema={schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def print_report(report: Report) -> None:
    """The result table, then warnings and the server's log findings."""
    headers = ("store", "measure", "conc", "value", "baseline", "ratio", "notes")
    table = [headers] + [
        (r.store, r.measure, r.concurrency, r.value, r.baseline, r.ratio, r.notes)
        for r in report.rows
    ]
    widths = [max(len(row[c]) for row in table) for c in range(len(headers) - 1)]
    right = {2, 3, 4, 5}
    for k, row in enumerate(table):
        cells = [
            cell.rjust(widths[c]) if c in right else cell.ljust(widths[c])
            for c, cell in enumerate(row[:-1])
        ]
        print("  ".join([*cells, row[-1]]))
        if k == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    print()
    print(
        "ratio = HTTP throughput / raw baseline of the same store and concurrency; "
        "SSE latency = receive - send wall clock per (event, subscriber)."
    )
    for failure in report.failures:
        print(f"FAILED: {failure}")
    for warning in report.warnings:
        print(f"WARNING: {warning}")
    for note in report.notes:
        print(f"note: {note}")
    if report.server_findings:
        print("server log: errors, warnings and exceptions (count, line):")
        for line in report.server_findings[:30]:
            print(f"  {line[:300]}")
        if len(report.server_findings) > 30:
            print(f"  … {len(report.server_findings) - 30} more")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="seconds per throughput window (5)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per window (1)")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL URL (a schema is made)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--sse-events", type=int, help="events the SSE writer appends (200)")
    parser.add_argument("--sse-rate", type=float, default=100.0, help="SSE writer events/s")
    parser.add_argument(
        "--poll-interval", type=float, help="RUNLEDGER_POLL_INTERVAL (default: the server's)"
    )
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"sqlite", "postgres"}
    if unknown or not stores:
        parser.error(f"--stores takes sqlite and/or postgres, not {sorted(unknown)}")
    args.stores = stores
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    """Defaults, shortened by --quick, overridden by explicit flags."""
    quick = args.quick
    return Plan(
        duration=args.duration or (1.0 if quick else 5.0),
        warmup=args.warmup if args.warmup is not None else (0.3 if quick else 1.0),
        clients=(1, 16),
        subscribers=(1, 100),
        sse_events=args.sse_events or (30 if quick else 200),
        sse_rate=args.sse_rate,
        one_run=True,
        notify_variant=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run every measurement on every requested store and print the report."""
    args = parse_args(argv)
    plan = make_plan(args)

    def interrupted(signum: int, _frame: object) -> None:
        if STOP.is_set():
            return  # already cleaning up: let it finish
        STOP.set()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="runledger-bench-"))
    report = Report()
    load_start = os.getloadavg()
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        report.notes.append(
            f"other processes were busy when the benchmark started (1-min load "
            f"{load_start[0]:.2f} on {os.cpu_count()} CPUs): expect noisy figures"
        )
    facts = [
        f"command:  {shlex.join([sys.executable, *sys.argv])}",
        f"cwd:      {Path.cwd()}",
        f"machine:  nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
        f"{cpu_model()}, {platform.system()} {platform.release()} {platform.machine()}",
        f"python:   {platform.python_implementation()} {platform.python_version()}; "
        + ", ".join(
            f"{p} {metadata.version(p)}"
            for p in ("httpx", "uvicorn", "starlette", "sse-starlette", "eventsourcing", "psycopg")
        ),
        f"sqlite:   {sqlite3.sqlite_version} (stdlib); files in {tmp} ({filesystem_of(tmp)})",
    ]
    try:
        facts.append(f"postgres: {postgres_facts(args.pg_url)}")
    except Exception as exc:
        facts.append(f"postgres: unreachable at {args.pg_url}: {exc}")
    facts.append(
        f"plan:     throughput {plan.warmup:g} s warm-up + {plan.duration:g} s per case, clients "
        f"{'/'.join(map(str, plan.clients))}; SSE {plan.sse_events} events at "
        f"{plan.sse_rate:g}/s to {'/'.join(map(str, plan.subscribers))} subscribers; "
        "load generator shares the machine with the server"
    )
    try:
        for store in args.stores:
            try:
                if store == "postgres":
                    with postgres_schema(args.pg_url) as url:
                        bench_store(store, url, tmp / store, plan, args, report)
                else:
                    db = tmp / store / "events.db"
                    db.parent.mkdir(parents=True, exist_ok=True)
                    bench_store(store, f"sqlite:///{db}", tmp / store, plan, args, report)
            except Exception as exc:
                report.failures.append(f"{store}: {exc}")
                progress(f"{store} FAILED: {exc}")
    except KeyboardInterrupt as exc:
        progress(f"interrupted ({exc}): servers stopped, schemas dropped, temp files removed")
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("runledger spine benchmark")
    for line in facts:
        print(line)
    load_end = os.getloadavg()
    print(
        f"load:     1-min load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end"
        f" (the benchmark itself adds ~2)"
    )
    print(f"wall:     {time.monotonic() - started:.0f} s")
    print()
    print_report(report)
    return 1 if report.failures or report.warnings else 0


if __name__ == "__main__":
    sys.exit(main())
