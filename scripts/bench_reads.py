#!/usr/bin/env python3
"""Benchmark reading the read models over HTTP against the framework's own floor.

For each store, in one run, on one server whose store holds R runs of one user (10,100,
submitted by an in-process engine, the read models caught up before the server starts):
GET requests/s, with 1 and 4 keep-alive clients, of

- the baseline: a trivial keyed JSON route (`/api/server/info`: no database, a few bytes);
- `GET /api/runs/{id}`: one run's document;
- `GET /api/runs?limit=50`: the first page of the runs list;
- `GET /api/runs?limit=50&cursor=…`: page 200 of it (the cursor read once beforehand);

each as a ratio of the baseline at the same concurrency, with the server's CPU per request.
The cases take turns (`--rounds` rounds, A B C …, then … C B A), each case's time split
between them: the machine's speed drifts by more than a ratio's margin over a minute, and
a case measured once, a minute after its baseline, had moved by as much (page 200 at 0.26
of the baseline in one run, 0.89 in the next).
The targets (issue 14, PostgreSQL): one run >= 0.5 of the baseline; list pages >= 0.3, at
page 1 and page 200 alike. The process that projects keeps the pages it read until one of
the owner's runs changes (projections/run_documents.py); the last row shows page 1 while
the owner keeps submitting runs (CHURN/s), so that pages are read from the view again.

    .venv/bin/python scripts/bench_reads.py [--quick] [--runs 10100] [--duration 5]
        [--rounds 2] [--stores sqlite,postgres]

Progress goes to stderr, the table to stdout; exit status 1 when a measurement failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchload import BenchError, Measured, Op, alternate, combine, timed_workers
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    parse_with_stores,
    percentile,
    progress,
    run_benchmark,
)
from benchserver import USER_KEY, LeanClient, Server, cpu_mark, cpu_text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import open_runtime  # noqa: E402

PAGE = 50
CHURN = 20  # runs/s the owner submits during the last row (each invalidates their pages)
DEEP_PAGE = 200
TRIVIAL = "/api/server/info"
TARGETS = {"run": 0.5, "list": 0.3}
SETUP = Setup(
    title="runledger read-model benchmark (GET over HTTP)",
    packages=("uvicorn", "starlette", "psycopg", "orjson"),
    pg_shown=("shared_buffers",),
    code=True,
    stop_workers=True,
    legend=f"value = GET requests/s; baseline = GET {TRIVIAL} (no database) at the same "
    "concurrency, same server, same run; ratio = value / baseline (targets on PostgreSQL: "
    f">= {TARGETS['run']} for one run, >= {TARGETS['list']} for list pages); p50 / p99 latency "
    "and the server's CPU per request in the notes",
)


def fill(url: str, data_dir: Path, runs: int) -> str:
    """`runs` runs of alice's, the read models caught up; one run's id."""
    runtime = open_runtime(url, data_dir)
    try:
        started, first = time.monotonic(), ""
        for i in range(runs):
            run_id = str(runtime.engine.submit_run("alice", f"run {i}").run_id)
            first = first or run_id
        runtime.catch_up()
        progress(f"  {runs:,} runs in {time.monotonic() - started:.0f} s")
        return first
    finally:
        runtime.close()


def deep_cursor(server: Server, pages: int) -> str:
    """The cursor of list page `pages` (following next_cursor from the first)."""
    import orjson

    client = LeanClient(server, USER_KEY)
    try:
        path = f"/api/runs?limit={PAGE}"
        for _ in range(pages - 1):
            status, body = client.get(path)
            if status != 200:
                raise BenchError(f"GET {path}: {status}")
            cursor = orjson.loads(body)["next_cursor"]
            if not cursor:
                raise BenchError(f"the list ended before page {pages}")
            path = f"/api/runs?limit={PAGE}&cursor={cursor}"
        return path
    finally:
        client.close()


def gets(
    server: Server, path: str, n: int, warmup: float, duration: float, churn: float = 0.0
) -> Measured:
    """n clients, each one GET after another on its own keep-alive connection; with `churn`,
    the owner submits that many runs per second meanwhile."""
    if churn:
        return _with_churn(server, churn, lambda: gets(server, path, n, warmup, duration))

    def open_worker(_: int) -> tuple[Op, Op]:
        client = LeanClient(server, USER_KEY)

        def op() -> None:
            status, answer = client.get(path)
            if status != 200:
                raise BenchError(f"GET {path}: {status} {answer[:200]!r}")

        return op, client.close

    return timed_workers(n, open_worker, warmup, duration, 20)


def _with_churn(server: Server, rate: float, measure: Callable[[], Measured]) -> Measured:
    import threading

    stop = threading.Event()
    failures: list[str] = []

    def submit_runs() -> None:
        client = LeanClient(server, USER_KEY)
        try:
            i = 0
            while not stop.wait(1 / rate):
                status, answer = client.post("/api/runs", b'{"task": "churn %d"}' % i)
                i += 1
                if status != 202:
                    failures.append(f"POST /api/runs: {status} {answer[:200]!r}")
                    return
        finally:
            client.close()

    writer = threading.Thread(target=submit_runs, daemon=True)
    writer.start()
    try:
        measured = measure()
    finally:
        stop.set()
        writer.join(10)
    if failures:
        raise BenchError(failures[0])
    return measured


def bench(
    runs: int, deep: int, plan: Slices, code: Path = ROOT
) -> Callable[[str, str, Path, Report], None]:
    def run(store: str, url: str, workdir: Path, report: Report) -> None:
        progress(f"{store}: {runs:,} runs")
        run_id = fill(url, workdir / "data", runs)
        server = Server(url, workdir / "data", root=code)
        server.start(timeout=300)
        try:
            first = f"/api/runs?limit={PAGE}"
            cases = [
                ("trivial", f"GET {TRIVIAL} (baseline)", TRIVIAL, 0.0),
                ("run", "GET /api/runs/{id}", f"/api/runs/{run_id}", 0.0),
                ("list", f"GET /api/runs, page 1 of {PAGE}", first, 0.0),
                ("list", f"GET /api/runs, page {deep}", deep_cursor(server, deep), 0.0),
                ("churn", f"GET /api/runs, page 1, {CHURN} submits/s", first, CHURN),
            ]
            for clients in (1, 4):
                measure_cases(store, server, cases, clients, plan, report)
        finally:
            server.stop()

    return run


@dataclass(frozen=True)
class Slices:
    """Each case's time: `duration` s in all, in `rounds` slices after `warmup` s each."""

    duration: float
    warmup: float
    rounds: int


def measure_cases(
    store: str,
    server: Server,
    cases: list[tuple[str, str, str, float]],
    clients: int,
    plan: Slices,
    report: Report,
) -> None:
    """Every case at `clients` clients, the cases taking turns in `plan.rounds` rounds (A B
    C, C B A, …) so that the machine's drift falls on the baseline and the others alike;
    a row per case, its ratio to the baseline's rate."""
    seconds = plan.duration / plan.rounds
    sides = {
        label: (lambda p=path, c=churn: gets(server, p, clients, plan.warmup, seconds, c))
        for _, label, path, churn in cases
    }
    parts, spent = alternate(
        sides,
        plan.rounds,
        lambda _: cpu_mark(server),
        lambda label, k: progress(f"{store}: {label}, {clients} client(s), round {k}"),
    )
    server.check_alive()
    zero = (0.0, 0.0, 0.0, 0.0)
    base = 0.0
    for kind, label, _, _ in cases:
        m = combine(parts[label])
        cpu = cpu_text(zero, tuple(spent[label]), (m.total, "req"))
        if m.errors:
            report.warn(f"{store}: {label}: {m.errors} errors ({m.first_error})")
        lat = (
            f"p50 {1000 * percentile(m.latencies, 50):.2f} ms "
            f"p99 {1000 * percentile(m.latencies, 99):.2f} ms"
        )
        if kind == "trivial":
            base = m.rate
            row = Row(store, label, str(clients), f"{m.rate:,.0f}/s", notes=f"{lat}; {cpu}")
            report.rows.append(row)
            continue
        ratio = m.rate / base if base else 0.0
        verdict = ""
        if store == "postgres" and kind in TARGETS:
            verdict = "; meets the target" if ratio >= TARGETS[kind] else "; BELOW the target"
        rounds = ", ".join(
            f"{x.rate / b.rate:.2f}" if b.rate else "n/a"
            for x, b in zip(parts[label], parts[cases[0][1]], strict=True)
        )
        notes = f"{lat}; {cpu}; ratio per round {rounds}{verdict}"
        report.rows.append(
            Row(
                store,
                label,
                str(clients),
                f"{m.rate:,.0f}/s",
                f"{base:,.0f}/s",
                f"{ratio:.2f}",
                notes,
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 runs, 1.5 s windows")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, help="rounds of the cases taking turns (2)")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parse_with_stores(parser, argv)
    runs = args.runs or (2_000 if args.quick else 10_100)
    duration = args.duration or (1.5 if args.quick else 5.0)
    deep = min(DEEP_PAGE, runs // PAGE - 1)  # page 200 takes 10,050 runs
    if deep < 2:
        parser.error(f"--runs of at least {3 * PAGE}")
    rounds = args.rounds or (1 if args.quick else 2)
    fact = (
        f"{runs:,} runs of one user; {duration:g} s per case and concurrency, in {rounds} "
        f"round(s) of the cases taking turns, after {args.warmup:g} s of warm-up each"
    )
    plan = bench(runs, deep, Slices(duration, args.warmup, rounds), args.code_dir)
    return run_benchmark(SETUP, args.stores, args.pg_url, fact, plan, args.code_dir)


if __name__ == "__main__":
    sys.exit(main())
