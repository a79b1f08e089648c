#!/usr/bin/env python3
"""Benchmark the runner path over real HTTP, on SQLite and PostgreSQL, against raw baselines.

For each store, in one run, it starts `runledger serve` in a subprocess and measures:

1. claim-to-first-event latency: a runner long-polls `POST /api/runner/claim`; a user submits
   a run; (a) submit acknowledged → claim answered (how fast a waiting runner wakes) and
   (b) claim answered → first runner event acknowledged (`POST /api/runs/{id}/events`, one
   event), repeated; p50/p99 of (a), (b) and of their sum per repetition;
2. ingestion throughput: 1 and 4 runners, each on its own claimed run, posting batches of 100
   `tool.output` events (~100 bytes of data each) for a fixed window, in events/s;
3. the raw baselines, interleaved with (2) at the same concurrency: on PostgreSQL psycopg with
   `LOCK TABLE … IN EXCLUSIVE MODE; INSERT` (100 rows) `; COMMIT` on a scratch table shaped
   like the event table; on SQLite the stdlib sqlite3 on a WAL file, `BEGIN IMMEDIATE;
   INSERT` (100 rows) `; COMMIT`. Each ingestion figure is printed as a ratio of these.

    .venv/bin/python scripts/bench_runners.py [--quick] [--duration 8] [--stores sqlite,postgres]

Progress goes to stderr, the report to stdout. The exit status is 1 when a measurement failed
or a correctness check (an error answer, a wrong sequence, a claim of the wrong run) warned,
130 when interrupted (SIGINT/SIGTERM; servers, temporary files and the schema are removed).
"""

from __future__ import annotations

import argparse
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
from concurrent.futures import ThreadPoolExecutor
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
API_KEYS = f"{USER_KEY}=alice:user,kb=bob:user,{RUNNER_KEY}=runner-1:runner"
DEFAULT_PG_URL = os.environ.get(
    "RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
JSON_HEADERS = {"Content-Type": "application/json"}
BATCH = 100  # events per POST and rows per baseline transaction
STATE = os.urandom(100).hex().encode()  # 200 bytes: the baseline's stored state per row
OUTPUT_TOPIC = "runledger:run.output"  # the engine's topic for runner output events
TOPIC = OUTPUT_TOPIC  # the baseline rows' topic
MAX_CONSECUTIVE_ERRORS = 20
PARK_DELAY = 0.2  # seconds between sending the claim and submitting: the claim is parked
SLOW_WAKE = 0.4  # a wake this slow suggests the claim slept out its 0.5 s re-check

Op = Callable[[], None]


class BenchError(RuntimeError):
    """A measurement could not be taken."""


@dataclass(frozen=True)
class Plan:
    """How long and how hard to push."""

    duration: float  # per case, split over `rounds` alternating baseline/HTTP slices
    warmup: float  # per slice
    clients: tuple[int, ...]
    repeats: int
    rounds: int

    @property
    def slice(self) -> float:
        """The timed seconds of one slice."""
        return self.duration / self.rounds


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

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


def combine(parts: list[Measured]) -> Measured:
    """Several timed slices as one measurement."""
    return Measured(
        count=sum(p.count for p in parts),
        seconds=sum(p.seconds for p in parts),
        errors=sum(p.errors for p in parts),
        latencies=[x for p in parts for x in p.latencies],
        first_error=next((p.first_error for p in parts if p.first_error), ""),
    )


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
    """Seconds as milliseconds with two decimals."""
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.2f} ms"


def fmt_rate(rate: float) -> str:
    """Events per second, rounded."""
    return "n/a" if math.isnan(rate) else f"{rate:,.0f} ev/s"


def output_event(i: int) -> dict[str, Any]:
    """One `tool.output` runner event whose data is about 100 bytes of JSON."""
    head = {"stream": "stdout", "n": i, "text": ""}
    filler = max(0, 100 - len(orjson.dumps(head)))
    return {"type": "tool.output", "data": {**head, "text": ("line of tool output " * 6)[:filler]}}


# -- the load harness ------------------------------------------------------------------------


def timed_workers(
    n: int, open_worker: Callable[[int], tuple[Op, Op]], warmup: float, duration: float
) -> Measured:
    """Run n threads doing one op after another; count ops that finish inside the window.

    `open_worker(i)` returns (op, close) for thread i; an op raises on failure. Every thread
    warms up for `warmup` seconds, then the window of `duration` seconds is counted.
    """
    barrier = threading.Barrier(n + 1)
    go = threading.Event()
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
        count = errors = consecutive = 0
        latencies: list[float] = []
        first_error = ""
        try:
            barrier.wait()
            go.wait()
            begin, end = window
            while True:
                started = time.perf_counter()
                if started >= end:
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
                finished = time.perf_counter()
                if begin <= finished <= end:
                    count += 1
                    latencies.append(finished - started)
        except threading.BrokenBarrierError:
            return
        finally:
            close()
        results[i] = Measured(count, end - begin, errors, latencies, first_error)

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
    )


def describe(m: Measured) -> str:
    """Per-transaction latency and error notes for a throughput row."""
    p50, p99 = percentile(m.latencies, 50), percentile(m.latencies, 99)
    text = f"{BATCH}-event txn p50 {fmt_ms(p50)} p99 {fmt_ms(p99)}"
    if m.errors:
        text += f"; {m.errors} errors, first: {m.first_error[:120]}"
    return text


# -- raw baselines ---------------------------------------------------------------------------


def pg_baseline(conninfo: str, schema: str, n: int, plan: Plan) -> Measured:
    """`LOCK TABLE … IN EXCLUSIVE MODE; INSERT` of 100 rows `; COMMIT`, from n connections."""
    import psycopg
    from psycopg import sql

    table = sql.Identifier(schema, "bench_raw_events")
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
    values = sql.SQL(", ").join([sql.SQL("(%s, %s, %s, %s)")] * BATCH)
    insert = sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES {}"
        " RETURNING notification_id"
    ).format(table, values)

    def open_worker(_: int) -> tuple[Op, Op]:
        conn = psycopg.connect(conninfo)
        cur = conn.cursor()
        originator = uuid.uuid4()
        version = [0]

        def op() -> None:
            params: list[Any] = []
            for _ in range(BATCH):
                version[0] += 1
                params += (originator, version[0], TOPIC, STATE)
            cur.execute(lock, prepare=True)
            cur.execute(insert, params, prepare=True)
            if len(cur.fetchall()) != BATCH:
                raise BenchError("the baseline INSERT returned the wrong number of ids")
            conn.commit()

        return op, conn.close

    try:
        return timed_workers(n, open_worker, plan.warmup, plan.slice)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def sqlite_baseline(path: Path, n: int, plan: Plan) -> Measured:
    """`BEGIN IMMEDIATE; INSERT` of 100 rows `; COMMIT` on a WAL file, from n threads."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE bench_raw_events (originator_id TEXT, originator_version INTEGER,"
            " topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
        )

    def open_worker(_: int) -> tuple[Op, Op]:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        originator = uuid.uuid4().hex
        version = [0]

        def op() -> None:
            rows = []
            for _ in range(BATCH):
                version[0] += 1
                rows.append((originator, version[0], TOPIC, STATE))
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO bench_raw_events VALUES (?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return op, conn.close

    try:
        return timed_workers(n, open_worker, plan.warmup, plan.slice)
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

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.database_url = database_url
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLEDGER_")}
        env.update(
            RUNLEDGER_API_KEYS=API_KEYS,
            RUNLEDGER_DATA_DIR=str(data_dir),
            RUNLEDGER_LEASE_SECONDS="3600",  # no lease expires mid-benchmark
        )
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
            raise BenchError("server exited unexpectedly:\n" + "".join(self.output[-40:]))

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
                key = line
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

    def client(self, key: str) -> httpx.Client:
        """A sync HTTP client speaking with one key."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
            verify=ssl_context(),
        )


def cpu_mark(server: Server | None) -> tuple[float, float, float]:
    """(wall clock, this process's CPU, the server's CPU) now."""
    return time.perf_counter(), time.process_time(), server.cpu_seconds() if server else 0.0


def cpu_text(before: tuple[float, float, float], after: tuple[float, float, float]) -> str:
    """CPU used between two marks, in % of one core, by the server and by this benchmark."""
    wall = max(after[0] - before[0], 1e-9)
    bench = 100 * (after[1] - before[1]) / wall
    if after[2] or before[2]:
        return f"cpu srv {100 * (after[2] - before[2]) / wall:.0f}% bench {bench:.0f}%"
    return f"cpu bench {bench:.0f}%"


# -- the runner path -------------------------------------------------------------------------


def claim_one(runner: httpx.Client, wait: float) -> dict[str, Any]:
    """POST /api/runner/claim; the lease (BenchError on anything but 200)."""
    r = runner.post("/api/runner/claim", json={"runner_id": "bench-runner", "wait_seconds": wait})
    if r.status_code != 200:
        raise BenchError(f"claim: {r.status_code} {r.text[:300]}")
    return r.json()


def submit_one(user: httpx.Client, task: str) -> str:
    """POST /api/runs; the new run's id."""
    r = user.post("/api/runs", json={"task": task})
    if r.status_code != 202:
        raise BenchError(f"submit: {r.status_code} {r.text[:300]}")
    return str(r.json()["run_id"])


def finish(runner: httpx.Client, run_id: str, token: int) -> None:
    """Report `no_changes`, so that the run leaves the queue."""
    r = runner.post(
        f"/api/runs/{run_id}/report", json={"fencing_token": token, "outcome": "no_changes"}
    )
    if r.status_code != 200:
        raise BenchError(f"report: {r.status_code} {r.text[:300]}")


@dataclass
class Held:
    """A run this benchmark holds a lease on, and the run's last sequence so far."""

    run_id: str
    token: int
    sequence: int


def open_runs(server: Server, n: int) -> list[Held]:
    """Submit n runs and claim them all."""
    with server.client(USER_KEY) as user:
        wanted = [submit_one(user, f"ingestion run {i}") for i in range(n)]
    held: dict[str, Held] = {}
    with server.client(RUNNER_KEY) as runner:
        while len(held) < n:
            lease = claim_one(runner, 10)
            run = lease["run"]
            held[run["run_id"]] = Held(
                run["run_id"], int(lease["fencing_token"]), int(run["sequence"])
            )
    if set(held) != set(wanted):
        raise BenchError(f"claimed other runs than submitted: {sorted(set(held) - set(wanted))}")
    return [held[run_id] for run_id in wanted]


def close_runs(server: Server, runs: list[Held]) -> None:
    """Report every run finished, so no claimable or held work is left behind."""
    with server.client(RUNNER_KEY) as runner:
        for run in runs:
            finish(runner, run.run_id, run.token)


def ingest(server: Server, runs: list[Held], plan: Plan, report: Report) -> Measured:
    """Each client posts 100-event `tool.output` batches to its own run; counts events."""

    wrong: list[str] = []

    def open_worker(i: int) -> tuple[Op, Op]:
        run = runs[i]
        client = server.client(RUNNER_KEY)
        path = f"/api/runs/{run.run_id}/events"

        def op() -> None:
            events = [output_event(run.sequence + k) for k in range(BATCH)]
            body = orjson.dumps({"fencing_token": run.token, "events": events})
            r = client.post(path, content=body, headers=JSON_HEADERS)
            if r.status_code != 200:
                raise BenchError(f"{r.status_code} {r.text[:200]}")
            got = int(r.json()["sequence"])
            if got != run.sequence + BATCH:
                wrong.append(f"run {run.run_id}: sequence {got} after {run.sequence}")
            run.sequence = got

        return op, client.close

    m = timed_workers(len(runs), open_worker, plan.warmup, plan.slice)
    if wrong:
        report.warn(f"{len(wrong)} batches did not move the sequence by {BATCH}: {wrong[:3]}")
    return Measured(m.count * BATCH, m.seconds, m.errors, m.latencies, m.first_error)


@dataclass
class Latency:
    """Per repetition: submit acknowledged → claim answered, claim → first event acknowledged."""

    wake: list[float] = field(default_factory=list)
    first_event: list[float] = field(default_factory=list)
    submit_rtt: list[float] = field(default_factory=list)
    early: int = 0  # the claim answered before the submit's answer reached the client


def claim_latency(server: Server, repeats: int, report: Report, store: str) -> Latency:
    """A parked long-poll claim, a submission, the first event: timed `repeats` times."""
    out = Latency()
    event = orjson.dumps(output_event(0))

    def runner_side(runner: httpx.Client) -> tuple[float, float, dict[str, Any]]:
        lease = claim_one(runner, 20)
        answered = time.perf_counter()
        run_id, token = lease["run"]["run_id"], int(lease["fencing_token"])
        body = b'{"fencing_token": %d, "events": [%s]}' % (token, event)
        r = runner.post(f"/api/runs/{run_id}/events", content=body, headers=JSON_HEADERS)
        acked = time.perf_counter()
        if r.status_code != 200:
            raise BenchError(f"first event: {r.status_code} {r.text[:300]}")
        return answered, acked, lease

    with (
        server.client(USER_KEY) as user,
        server.client(RUNNER_KEY) as runner,
        ThreadPoolExecutor(1, thread_name_prefix="runner") as pool,
    ):
        # Warm both connections and the server's code paths once, untimed.
        run_id = submit_one(user, "warm-up")
        lease = claim_one(runner, 5)
        finish(runner, lease["run"]["run_id"], int(lease["fencing_token"]))
        gc.collect()
        gc.disable()
        try:
            for i in range(repeats):
                future = pool.submit(runner_side, runner)
                time.sleep(PARK_DELAY)
                if future.done():
                    future.result()  # raises what went wrong
                    raise BenchError("the claim answered before any run was submitted")
                sent = time.perf_counter()
                run_id = submit_one(user, f"latency run {i}")
                acked = time.perf_counter()
                answered, event_acked, lease = future.result(timeout=60)
                if lease["run"]["run_id"] != run_id:
                    report.warn(f"{store}: the waiting runner claimed another run than submitted")
                out.wake.append(answered - acked)
                out.first_event.append(event_acked - answered)
                out.submit_rtt.append(acked - sent)
                out.early += answered < acked
                finish(runner, lease["run"]["run_id"], int(lease["fencing_token"]))
        finally:
            gc.enable()
    return out


def stored_output_size(url: str, store: str) -> str:
    """Average stored state size of the server's runner-output events (for comparison)."""
    try:
        if store == "postgres":
            import psycopg

            from adapters.store import StoreSettings

            settings = StoreSettings.from_url(url)
            with psycopg.connect(settings.pg_conninfo, connect_timeout=5) as conn:
                row = conn.execute(
                    f'SELECT avg(octet_length(state)), count(*) FROM "{settings.pg_schema}".'
                    '"runledger_events" WHERE topic = %s',
                    (OUTPUT_TOPIC,),
                ).fetchone()
        else:
            path = url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                row = conn.execute(  # the library's default table name on SQLite
                    "SELECT avg(length(state)), count(*) FROM stored_events WHERE topic = ?",
                    (OUTPUT_TOPIC,),
                ).fetchone()
    except Exception as exc:
        return f"stored size unknown ({exc!r:.80})"
    if not row or row[0] is None:
        return "stored size unknown (no output events)"
    return f"the server stored {int(row[1]):,} output events, avg state {float(row[0]):.0f} B"


# -- one store ---------------------------------------------------------------------------------


def ingestion_case(
    store: str, url: str, tmp: Path, server: Server, n: int, plan: Plan, report: Report
) -> None:
    """Raw baseline and HTTP ingestion at one concurrency, in alternating slices (ABAB…).

    The machine is shared with the database and whatever else runs: alternating slices make
    slow drifts in its load fall on both sides of the ratio alike.
    """
    runs = open_runs(server, n)
    bases: list[Measured] = []
    https: list[Measured] = []
    base_cpu = http_cpu = 0.0
    srv_cpu = 0.0
    try:
        for k in range(plan.rounds):
            progress(f"{store}: raw baseline, {n} connection(s), slice {k + 1}/{plan.rounds}")
            before = time.process_time()
            if store == "postgres":
                from adapters.store import StoreSettings

                settings = StoreSettings.from_url(url)
                bases.append(pg_baseline(settings.pg_conninfo, settings.pg_schema, n, plan))
            else:
                bases.append(sqlite_baseline(tmp / "baseline.db", n, plan))
            base_cpu += time.process_time() - before
            progress(f"{store}: HTTP ingestion, {n} runner(s), slice {k + 1}/{plan.rounds}")
            mark = cpu_mark(server)
            https.append(ingest(server, runs, plan, report))
            after = cpu_mark(server)
            http_cpu += after[1] - mark[1]
            srv_cpu += after[2] - mark[2]
            server.check_alive()
    finally:
        close_runs(server, runs)
    base, http = combine(bases), combine(https)
    base_rate = base.rate * BATCH
    wall = sum(plan.warmup + plan.slice for _ in range(plan.rounds))
    name = (
        "raw LOCK+INSERT 100+COMMIT"
        if store == "postgres"
        else "raw BEGIN IMM+INSERT 100+COMMIT (WAL)"
    )
    notes = f"{describe(base)}; cpu bench {100 * base_cpu / wall:.0f}%"
    report.rows.append(Row(store, name, str(n), fmt_rate(base_rate), notes=notes))
    slices = ", ".join(
        f"{h.rate / (b.rate * BATCH):.2f}" if b.rate else "n/a"
        for b, h in zip(bases, https, strict=True)
    )
    notes = (
        f"{describe(http)}; cpu srv {100 * srv_cpu / wall:.0f}% bench "
        f"{100 * http_cpu / wall:.0f}%; ratio per slice {slices}"
    )
    ratio = f"{http.rate / base_rate:.2f}" if base_rate else "n/a"
    measure = f"POST events, {BATCH}/batch"
    report.rows.append(
        Row(store, measure, str(n), fmt_rate(http.rate), fmt_rate(base_rate), ratio, notes)
    )
    for what, m in (("baseline", base), ("ingestion", http)):
        if m.errors:
            report.warn(f"{store} {what} ({n}): {m.errors} errors, first: {m.first_error}")
        if m.count == 0:
            report.warn(f"{store} {what} ({n}): no transaction finished inside the window")


def bench_store(store: str, url: str, tmp: Path, plan: Plan, report: Report) -> None:
    """Claim latency, then baseline and ingestion at each concurrency, for one store."""
    server = Server(url, tmp / "data")
    progress(f"{store}: starting runledger serve")
    try:
        server.start()
        with server.client(USER_KEY) as c:
            info = c.get("/api/server/info").json()
        if info.get("store") != store:
            raise BenchError(f"server says store {info.get('store')!r}, expected {store!r}")

        progress(f"{store}: claim-to-first-event latency, {plan.repeats} repetitions")
        mark = cpu_mark(server)
        lat = claim_latency(server, plan.repeats, report, store)
        cpu = cpu_text(mark, cpu_mark(server))
        server.check_alive()
        sums = [a + b for a, b in zip(lat.wake, lat.first_event, strict=True)]
        notes = {
            "submit ack → claim answered": (
                f"n={len(lat.wake)}, max {fmt_ms(max(lat.wake))}, "
                f"{sum(w > SLOW_WAKE for w in lat.wake)} over {SLOW_WAKE * 1000:.0f} ms, "
                f"{lat.early} before the submit's own answer; submit RTT p50 "
                f"{fmt_ms(percentile(lat.submit_rtt, 50))}"
            ),
            "claim answered → 1st event ack": f"max {fmt_ms(max(lat.first_event))}; {cpu}",
            "sum (per repetition)": f"max {fmt_ms(max(sums))}",
        }
        for (measure, note), values in zip(
            notes.items(), (lat.wake, lat.first_event, sums), strict=True
        ):
            p50, p99 = percentile(values, 50), percentile(values, 99)
            value = f"{fmt_ms(p50)} / {fmt_ms(p99)}"
            report.rows.append(Row(store, f"{measure} p50/p99", "1", value, notes=note))

        for n in plan.clients:
            ingestion_case(store, url, tmp, server, n, plan, report)
        report.notes.append(f"{store}: {stored_output_size(url, store)} (baseline rows: 200 B)")
    finally:
        started_ok = server.proc is not None and server.proc.poll() is None
        code = server.stop()
        if started_ok and code not in (0, None, -signal.SIGTERM):
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


def code_state() -> str:
    """The git commit measured, and which tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "diff", "--name-only", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
    except OSError as exc:
        return f"unknown ({exc})"
    dirty = f"; uncommitted changes in {', '.join(changed)}" if changed else "; clean"
    return f"{head[:90]}{dirty}"


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
    names = ("server_version", "synchronous_commit", "fsync", "shared_buffers")
    with psycopg.connect(settings.pg_conninfo, connect_timeout=5) as conn:
        values = [str((conn.execute(f"SHOW {name}").fetchone() or ("?",))[0]) for name in names]
    where = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_dbname}"
    settings_text = ", ".join(f"{k}={v}" for k, v in zip(names[1:], values[1:], strict=True))
    return f"PostgreSQL {values[0]} at {where} ({settings_text})"


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
        progress(f"dropped schema {schema}")


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
        "ratio = HTTP ingestion / raw baseline of the same store and concurrency (target on "
        "PostgreSQL: >= 0.50); latencies are client wall clock, p50 / p99 over the repetitions."
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, help="timed seconds per throughput case and side (8)"
    )
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per slice (0.5)")
    parser.add_argument("--repeats", type=int, help="claim-latency repetitions (50)")
    parser.add_argument(
        "--rounds", type=int, help="alternating baseline/HTTP slices per throughput case (2)"
    )
    parser.add_argument("--stores", default="postgres,sqlite", help="postgres,sqlite")
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL URL (a fresh schema is made)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
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
        duration=args.duration or (1.5 if quick else 8.0),
        warmup=args.warmup if args.warmup is not None else (0.3 if quick else 0.5),
        clients=(1, 4),
        repeats=args.repeats or (10 if quick else 50),
        rounds=args.rounds or (1 if quick else 2),
    )


def main(argv: list[str] | None = None) -> int:
    """Run every measurement on every requested store and print the report."""
    args = parse_args(argv)
    plan = make_plan(args)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # even when started in the background
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="runledger-bench-runners-"))
    report = Report()
    interrupted_by = ""
    load_start = os.getloadavg()
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        report.notes.append(
            f"other processes were busy when the benchmark started (1-min load "
            f"{load_start[0]:.2f} on {os.cpu_count()} CPUs): expect noisy figures"
        )
    facts = [
        f"command:  {shlex.join([sys.executable, *sys.argv])}",
        f"cwd:      {Path.cwd()}",
        f"code:     {code_state()}",
        f"machine:  nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
        f"{cpu_model()}, {platform.system()} {platform.release()} {platform.machine()}",
        f"python:   {platform.python_implementation()} {platform.python_version()}; "
        + ", ".join(
            f"{p} {metadata.version(p)}"
            for p in ("httpx", "uvicorn", "starlette", "eventsourcing", "psycopg", "orjson")
        ),
        f"sqlite:   {sqlite3.sqlite_version} (stdlib); files in {tmp} ({filesystem_of(tmp)})",
    ]
    try:
        facts.append(f"postgres: {postgres_facts(args.pg_url)}")
    except Exception as exc:
        facts.append(f"postgres: unreachable at {args.pg_url}: {exc}")
    facts.append(
        f"plan:     {plan.repeats} claim-latency repetitions (claim parked {PARK_DELAY:g} s "
        f"before each submit); ingestion and baselines {plan.duration:g} s per case and side "
        f"in {plan.rounds} alternating slice(s) (baseline, HTTP, …) after {plan.warmup:g} s "
        f"warm-up each, {'/'.join(map(str, plan.clients))} clients, {BATCH} events per "
        "request/transaction; load generator shares the machine with the server"
    )
    try:
        for store in args.stores:
            try:
                if store == "postgres":
                    with postgres_schema(args.pg_url) as url:
                        bench_store(store, url, tmp / store, plan, report)
                else:
                    db = tmp / store / "events.db"
                    db.parent.mkdir(parents=True, exist_ok=True)
                    bench_store(store, f"sqlite:///{db}", tmp / store, plan, report)
            except Exception as exc:
                report.failures.append(f"{store}: {exc}")
                progress(f"{store} FAILED: {exc}")
    except KeyboardInterrupt as exc:  # cleaned up on the way out; print what was measured
        report.failures.append(f"interrupted ({exc or 'SIGINT'}): the table is partial")
        interrupted_by = str(exc) or "SIGINT"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("runledger runner-path benchmark")
    for line in facts:
        print(line)
    load_end = os.getloadavg()
    print(
        f"load:     1-min load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end"
        " (the benchmark itself adds ~2)"
    )
    print(f"wall:     {time.monotonic() - started:.0f} s")
    print()
    print_report(report)
    if interrupted_by:
        return 130
    return 1 if report.failures or report.warnings else 0


if __name__ == "__main__":
    sys.exit(main())
