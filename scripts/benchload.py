"""The timed load threads, and the raw database baselines they drive.

The bottom of the benchmark plumbing in scripts/ (`benchserver` and `benchreport` build on it):
n threads doing one operation after another in a fixed window, and the plain INSERT+COMMIT
workloads on PostgreSQL and SQLite that HTTP throughput is compared against.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The repository root: the server runs from it, and `adapters` imports from it.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STATE = os.urandom(100).hex().encode()  # 200 bytes: about one stored runner event

Op = Callable[[], None]
STOP = threading.Event()  # set on SIGINT/SIGTERM when asked: workers stop at once


class BenchError(RuntimeError):
    """A measurement could not be taken."""


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


def combine(parts: list[Measured]) -> Measured:
    """Several timed slices as one measurement."""
    return Measured(
        count=sum(p.count for p in parts),
        seconds=sum(p.seconds for p in parts),
        errors=sum(p.errors for p in parts),
        latencies=[x for p in parts for x in p.latencies],
        first_error=next((p.first_error for p in parts if p.first_error), ""),
        total=sum(p.total for p in parts),
    )


def alternate(
    sides: dict[str, Callable[[], Measured]],
    rounds: int,
    mark: Callable[[str], tuple[float, ...]],
    announce: Callable[[str, int], None],
) -> tuple[dict[str, list[Measured]], dict[str, list[float]]]:
    """Each side measured once per round, the order reversed every other round (A B, B A,
    A B, …): a drift in the machine's speed falls on every side alike. `mark(side)` (CPU
    counters, say) is read around each measurement, `announce(side, round)` called before
    it. Each side's measurements, and its marks' differences summed over the rounds."""
    names = list(sides)
    parts: dict[str, list[Measured]] = {name: [] for name in names}
    spent: dict[str, list[float]] = {}
    for k in range(rounds):
        for name in names if k % 2 == 0 else names[::-1]:
            announce(name, k + 1)
            before = mark(name)
            parts[name].append(sides[name]())
            after = mark(name)
            totals = spent.setdefault(name, [0.0] * len(after))
            for i, (a, b) in enumerate(zip(after, before, strict=True)):
                totals[i] += a - b
    return parts, spent


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


def stored_output_size(url: str, store: str, topic: str) -> str:
    """Average stored state size of the server's events of `topic` (for comparison)."""
    try:
        if store == "postgres":
            import psycopg

            from adapters.store import StoreSettings

            settings = StoreSettings.from_url(url)
            with psycopg.connect(settings.pg_conninfo, connect_timeout=5) as conn:
                row = conn.execute(
                    f'SELECT avg(octet_length(state)), count(*) FROM "{settings.pg_schema}".'
                    '"runledger_events" WHERE topic = %s',
                    (topic,),
                ).fetchone()
        else:
            path = url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                row = conn.execute(  # the library's default table name on SQLite
                    "SELECT avg(length(state)), count(*) FROM stored_events WHERE topic = ?",
                    (topic,),
                ).fetchone()
    except Exception as exc:
        return f"stored size unknown ({exc!r:.80})"
    if not row or row[0] is None:
        return "stored size unknown (no output events)"
    return f"the server stored {int(row[1]):,} output events, avg state {float(row[0]):.0f} B"
