"""The plumbing the benchmarks in scripts/ share: server, schema, raw baselines, load, report.

`bench_spine.py` and `bench_runners.py` import it (Python puts scripts/ on the path when one of
them runs); each keeps only what is specific to its own measurements.
"""

from __future__ import annotations

import argparse
import contextlib
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

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

USER_KEY, RUNNER_KEY = "ka", "kr"
API_KEYS = f"{USER_KEY}=alice:user,kb=bob:user,{RUNNER_KEY}=runner-1:runner"
DEFAULT_PG_URL = os.environ.get(
    "RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
JSON_HEADERS = {"Content-Type": "application/json"}
STATE = os.urandom(100).hex().encode()  # 200 bytes: about one stored runner event

Op = Callable[[], None]
STOP = threading.Event()  # set on SIGINT/SIGTERM when asked: workers stop at once


class BenchError(RuntimeError):
    """A measurement could not be taken."""


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
    """Seconds as milliseconds with two decimals."""
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.2f} ms"


def fmt_rate(rate: float) -> str:
    """Events per second, rounded."""
    return "n/a" if math.isnan(rate) else f"{rate:,.0f} ev/s"


def describe(m: Measured, label: str) -> str:
    """Latency (`label p50 … p99 …`) and error notes for a throughput row."""
    p50, p99 = percentile(m.latencies, 50), percentile(m.latencies, 99)
    text = f"{label} p50 {fmt_ms(p50)} p99 {fmt_ms(p99)}"
    if m.errors:
        text += f"; {m.errors} errors, first: {m.first_error[:120]}"
    return text


# -- the load harness ------------------------------------------------------------------------


def timed_workers(
    n: int,
    open_worker: Callable[[int], tuple[Op, Op]],
    warmup: float,
    duration: float,
    max_consecutive_errors: int,
) -> Measured:
    """n threads doing one op after another; count the ops that finish inside the window."""
    # open_worker(i) gives thread i its (op, close); an op raises on failure. Every thread
    # warms up for `warmup` seconds, then ops finishing in the next `duration` s are counted.
    # A thread gives up after `max_consecutive_errors` failed ops in a row, or when STOP is set.
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
                    if consecutive >= max_consecutive_errors:
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


# -- raw baselines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A raw-insert workload: the scratch table, its rows' topic, rows per transaction."""

    table: str
    topic: str
    batch: int = 1
    notify: bool = False  # PostgreSQL only: `NOTIFY` before each commit, like the recorder
    max_consecutive_errors: int = 50


def pg_baseline(
    conninfo: str, schema: str, n: int, warmup: float, duration: float, load: Baseline
) -> Measured:
    """`LOCK TABLE … IN EXCLUSIVE MODE; INSERT` of `batch` rows `[; NOTIFY]; COMMIT`, n conns."""
    import psycopg
    from psycopg import sql

    table = sql.Identifier(schema, load.table)
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
    values = sql.SQL(", ").join([sql.SQL("(%s, %s, %s, %s)")] * load.batch)
    insert = sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES {}"
        " RETURNING notification_id"
    ).format(table, values)
    channel = sql.SQL("NOTIFY {}").format(sql.Identifier(f"{schema}_{load.table}"))

    def open_worker(_: int) -> tuple[Op, Op]:
        conn = psycopg.connect(conninfo)
        cur = conn.cursor()
        originator = uuid.uuid4()
        version = [0]

        def op() -> None:
            params: list[Any] = []
            for _ in range(load.batch):
                version[0] += 1
                params += (originator, version[0], load.topic, STATE)
            cur.execute(lock, prepare=True)
            cur.execute(insert, params, prepare=True)
            if len(cur.fetchall()) != load.batch:
                raise BenchError("the baseline INSERT returned the wrong number of ids")
            if load.notify:
                cur.execute(channel)
            conn.commit()

        return op, conn.close

    try:
        return timed_workers(n, open_worker, warmup, duration, load.max_consecutive_errors)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def sqlite_baseline(path: Path, n: int, warmup: float, duration: float, load: Baseline) -> Measured:
    """`BEGIN IMMEDIATE; INSERT` of `batch` rows `; COMMIT` on a WAL file, from n threads."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            f"CREATE TABLE {load.table} (originator_id TEXT, originator_version INTEGER,"
            " topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
        )
    insert = f"INSERT INTO {load.table} VALUES (?, ?, ?, ?)"

    def open_worker(_: int) -> tuple[Op, Op]:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        originator = uuid.uuid4().hex
        version = [0]

        def op() -> None:
            rows = []
            for _ in range(load.batch):
                version[0] += 1
                rows.append((originator, version[0], load.topic, STATE))
            conn.execute("BEGIN IMMEDIATE")
            try:
                if len(rows) == 1:
                    conn.execute(insert, rows[0])
                else:
                    conn.executemany(insert, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return op, conn.close

    try:
        return timed_workers(n, open_worker, warmup, duration, load.max_consecutive_errors)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def raw_baseline(
    store: str, url: str, tmp: Path, n: int, warmup: float, duration: float, load: Baseline
) -> Measured:
    """The raw baseline of one store: PostgreSQL at url's schema, or SQLite in tmp."""
    if store == "postgres":
        from adapters.store import StoreSettings

        settings = StoreSettings.from_url(url)
        return pg_baseline(settings.pg_conninfo, settings.pg_schema, n, warmup, duration, load)
    return sqlite_baseline(tmp / "baseline.db", n, warmup, duration, load)


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

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        poll_interval: float | None = None,
        client_timeout: float = 30.0,
    ) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.client_timeout = client_timeout
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

    def start_for(self, store: str) -> None:
        """Start it, then check that it runs on the expected store."""
        self.start()
        with self.client(USER_KEY) as c:
            info = c.get("/api/server/info").json()
        if info.get("store") != store:
            raise BenchError(f"server says store {info.get('store')!r}, expected {store!r}")

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

    def findings(self, drop_timestamps: bool = False) -> list[str]:
        """Problems in the log: ERROR/WARNING lines and each traceback's exception, counted."""
        # drop_timestamps: count log lines that differ only in their leading time as one.
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
                timestamped = drop_timestamps and line[:1].isdigit()
                key = line.split(" ", 2)[-1] if timestamped else line
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
            timeout=self.client_timeout,
            verify=ssl_context(),
            **kw,
        )


# -- runs held by the benchmark --------------------------------------------------------------


def submit_run(user: httpx.Client, task: str) -> str:
    """POST /api/runs; the new run's id."""
    r = user.post("/api/runs", json={"task": task})
    if r.status_code != 202:
        raise BenchError(f"submit: {r.status_code} {r.text[:300]}")
    return str(r.json()["run_id"])


def claim_run(runner: httpx.Client, wait: float, runner_id: str) -> dict[str, Any]:
    """POST /api/runner/claim; the lease (BenchError on anything but 200)."""
    r = runner.post("/api/runner/claim", json={"runner_id": runner_id, "wait_seconds": wait})
    if r.status_code != 200:
        raise BenchError(f"claim: {r.status_code} {r.text[:300]}")
    return dict(r.json())


def report_no_changes(runner: httpx.Client, run_id: str, token: int) -> None:
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


def open_runs(server: Server, n: int, task: str, runner_id: str) -> list[Held]:
    """Submit n runs (`{task} {i}`) as the user and claim them all as the runner."""
    with server.client(USER_KEY) as user:
        wanted = [submit_run(user, f"{task} {i}") for i in range(n)]
    held: dict[str, Held] = {}
    with server.client(RUNNER_KEY) as runner:
        while len(held) < n:
            lease = claim_run(runner, 10, runner_id)
            run = lease["run"]
            held[run["run_id"]] = Held(
                run["run_id"], int(lease["fencing_token"]), int(run["sequence"])
            )
    if set(held) != set(wanted):
        raise BenchError(f"claimed other runs than submitted: {sorted(set(held) - set(wanted))}")
    return [held[run_id] for run_id in wanted]


# -- CPU accounting --------------------------------------------------------------------------


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


# -- stores, schemas, signals ----------------------------------------------------------------


@contextlib.contextmanager
def postgres_schema(pg_url: str, announce: bool = False) -> Iterator[str]:
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
        if announce:
            progress(f"dropped schema {schema}")


def handle_signals(stop_workers: bool) -> None:
    """Make SIGINT/SIGTERM raise KeyboardInterrupt, even when started in the background."""
    # stop_workers: the first signal also sets STOP, and later ones are ignored while the
    # benchmark cleans up.

    def interrupted(signum: int, _frame: object) -> None:
        if stop_workers:
            if STOP.is_set():
                return  # already cleaning up: let it finish
            STOP.set()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)


def parse_with_stores(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace:
    """Parse the command line, turning `--stores a,b` into a checked list."""
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"sqlite", "postgres"}
    if unknown or not stores:
        parser.error(f"--stores takes sqlite and/or postgres, not {sorted(unknown)}")
    args.stores = stores
    return args


def planned(args: argparse.Namespace, defaults: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """Each named flag's value when given, else its default: {name: (with --quick, without)}."""
    # A 0 counts as not given (the default), except for --warmup, where it means no warm-up.
    values = {}
    for name, (quick, full) in defaults.items():
        value = getattr(args, name)
        given = value is not None if name == "warmup" else bool(value)
        values[name] = value if given else (quick if args.quick else full)
    return values


# -- machine facts and the report ------------------------------------------------------------


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


def postgres_facts(pg_url: str, shown: tuple[str, ...]) -> str:
    """Server version and the `shown` settings (e.g. durability) of the PostgreSQL at pg_url."""
    import psycopg

    from adapters.store import StoreSettings

    settings = StoreSettings.from_url(pg_url)
    names = ("server_version", *shown)
    with psycopg.connect(settings.pg_conninfo, connect_timeout=5) as conn:
        values = [str((conn.execute(f"SHOW {name}").fetchone() or ("?",))[0]) for name in names]
    where = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_dbname}"
    settings_text = ", ".join(f"{k}={v}" for k, v in zip(names[1:], values[1:], strict=True))
    return f"PostgreSQL {values[0]} at {where} ({settings_text})"


def load_average(report: Report) -> tuple[float, float, float]:
    """The load average now; a note in the report when the machine is already busy."""
    load = os.getloadavg()
    if load[0] > 0.5 * (os.cpu_count() or 1):
        report.notes.append(
            f"other processes were busy when the benchmark started (1-min load "
            f"{load[0]:.2f} on {os.cpu_count()} CPUs): expect noisy figures"
        )
    return load


def machine_facts(
    tmp: Path, pg_url: str, packages: tuple[str, ...], pg_shown: tuple[str, ...], code: bool
) -> list[str]:
    """Header lines: command, cwd, [git state,] machine, versions, SQLite and PostgreSQL."""
    facts = [
        f"command:  {shlex.join([sys.executable, *sys.argv])}",
        f"cwd:      {Path.cwd()}",
        *([f"code:     {code_state()}"] if code else []),
        f"machine:  nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
        f"{cpu_model()}, {platform.system()} {platform.release()} {platform.machine()}",
        f"python:   {platform.python_implementation()} {platform.python_version()}; "
        + ", ".join(f"{p} {metadata.version(p)}" for p in packages),
        f"sqlite:   {sqlite3.sqlite_version} (stdlib); files in {tmp} ({filesystem_of(tmp)})",
    ]
    try:
        facts.append(f"postgres: {postgres_facts(pg_url, pg_shown)}")
    except Exception as exc:
        facts.append(f"postgres: unreachable at {pg_url}: {exc}")
    return facts


def print_header(
    title: str, facts: list[str], load_start: tuple[float, float, float], started: float
) -> None:
    """The title, the facts, the load at start and end, and the wall time since `started`."""
    print(title)
    for line in facts:
        print(line)
    load_end = os.getloadavg()
    print(
        f"load:     1-min load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end"
        " (the benchmark itself adds ~2)"
    )
    print(f"wall:     {time.monotonic() - started:.0f} s")
    print()


def print_report(report: Report, legend: str) -> None:
    """The result table, its legend, then failures, warnings, notes and server log findings."""
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
    print(legend)
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


# -- one benchmark run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What a benchmark script says about itself: header, legend, and how it ends."""

    title: str  # the report's first line
    packages: tuple[str, ...]  # whose versions the header gives
    pg_shown: tuple[str, ...]  # PostgreSQL settings the header gives
    legend: str  # printed under the table
    code: bool = False  # a header line with the git commit and uncommitted files
    tmp_prefix: str = "runledger-bench-"
    stop_workers: bool = False  # a signal also stops the load threads (see handle_signals)
    partial_on_interrupt: bool = False  # interrupted: print what was measured, else nothing
    announce_drop: bool = False  # a progress line when the PostgreSQL schema is dropped


def for_each_store(
    setup: Setup,
    stores: list[str],
    pg_url: str,
    tmp: Path,
    report: Report,
    bench: Callable[[str, str, Path, Report], None],
) -> None:
    """bench(store, url, workdir, report) per store; a store's failure is reported, not raised."""
    for store in stores:
        try:
            if store == "postgres":
                with postgres_schema(pg_url, setup.announce_drop) as url:
                    bench(store, url, tmp / store, report)
            else:
                db = tmp / store / "events.db"
                db.parent.mkdir(parents=True, exist_ok=True)
                bench(store, f"sqlite:///{db}", tmp / store, report)
        except Exception as exc:
            report.failures.append(f"{store}: {exc}")
            progress(f"{store} FAILED: {exc}")


def run_benchmark(
    setup: Setup,
    stores: list[str],
    pg_url: str,
    plan_fact: str,
    bench: Callable[[str, str, Path, Report], None],
) -> int:
    """Measure every store in a temporary directory, print header and report; the exit status."""
    # 0; 1 when a measurement failed or a warning was printed; 130 when interrupted.
    handle_signals(setup.stop_workers)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=setup.tmp_prefix))
    report = Report()
    interrupted_by = ""
    load_start = load_average(report)
    facts = machine_facts(tmp, pg_url, setup.packages, setup.pg_shown, setup.code)
    facts.append(f"plan:     {plan_fact}")
    try:
        for_each_store(setup, stores, pg_url, tmp, report, bench)
    except KeyboardInterrupt as exc:  # cleaned up on the way out
        if not setup.partial_on_interrupt:
            progress(f"interrupted ({exc}): servers stopped, schemas dropped, temp files removed")
            return 130
        report.failures.append(f"interrupted ({exc or 'SIGINT'}): the table is partial")
        interrupted_by = str(exc) or "SIGINT"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_header(setup.title, facts, load_start, started)
    print_report(report, setup.legend)
    if interrupted_by:
        return 130
    return 1 if report.failures or report.warnings else 0
