#!/usr/bin/env python3
"""Benchmark `runledger serve --workers 2` against one process, on PostgreSQL.

One run, alternating (1, 2, 2, 1 processes, each time a fresh server on the same schema):
16 runners, each with one keep-alive connection (`LeanClient`; the kernel gives each
connection to one worker) on its own claimed run, post one event per command as fast as
they can. `value` = commands/s with 2 processes, `baseline` = with 1, summed over the
rounds; the target (issue 14) is >= 1.3. The notes give, for each, the CPU of the server
processes, of this load generator and of PostgreSQL (all its processes), in % of one core:
on 2 cores they share, what bounds the figure is whatever is near 200 % together.

    .venv/bin/python scripts/bench_workers.py [--quick] [--duration 8] [--clients 16]

Progress goes to stderr, the table to stdout; exit status 1 when a measurement failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from benchload import BenchError, Measured, Op, timed_workers
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    describe,
    fmt_rate,
    parse_with_stores,
    progress,
    run_benchmark,
)
from benchserver import RUNNER_KEY, Held, LeanClient, Server, open_runs, postgres_cpu

TARGET = 1.3
SETUP = Setup(
    title="runledger serve --workers: 2 processes against 1 (single-event commands)",
    packages=("uvicorn", "starlette", "psycopg", "eventsourcing"),
    pg_shown=("synchronous_commit", "fsync", "max_connections"),
    code=True,
    stop_workers=True,
    legend=f"value = commands/s (POST /api/runs/{{id}}/events, one event each) with 2 worker "
    f"processes; baseline = with 1, same schema, alternating rounds; ratio = value / baseline "
    f"(target >= {TARGET}); cpu in % of one core (2 cores in all): server processes, this "
    "load generator, PostgreSQL",
)


@dataclass
class Tally:
    """What the rounds with one number of processes added up to."""

    commands: int = 0
    seconds: float = 0.0  # timed windows
    wall: float = 0.0  # from the first mark to the last, warm-up included
    server_cpu: float = 0.0
    bench_cpu: float = 0.0
    postgres_cpu: float = 0.0
    last: Measured | None = None

    def cpu(self) -> str:
        wall = max(self.wall, 1e-9)
        return (
            f"cpu srv {100 * self.server_cpu / wall:.0f}% bench {100 * self.bench_cpu / wall:.0f}%"
            f" postgres {100 * self.postgres_cpu / wall:.0f}%"
        )


def commands(server: Server, held: list[Held], warmup: float, duration: float) -> Measured:
    """One runner per held run, each posting single events to it."""

    def open_worker(i: int) -> tuple[Op, Op]:
        run = held[i]
        client = LeanClient(server, RUNNER_KEY)
        path = f"/api/runs/{run.run_id}/events"
        n = [0]

        def op() -> None:
            n[0] += 1
            event = {"type": "log", "data": {"line": "benchmark output line", "n": n[0]}}
            status, answer = client.post(
                path, orjson.dumps({"fencing_token": run.token, "events": [event]})
            )
            if status != 200:
                raise BenchError(f"POST events: {status} {answer[:200]!r}")

        return op, client.close

    return timed_workers(len(held), open_worker, warmup, duration, 50)


def bench(clients: int, duration: float, warmup: float) -> Callable[[str, str, Path, Report], None]:
    def run(store: str, url: str, workdir: Path, report: Report) -> None:
        tallies = {1: Tally(), 2: Tally()}
        for round_no, workers in enumerate((1, 2, 2, 1), 1):
            progress(f"{store}: round {round_no}, {workers} process(es), {clients} clients")
            server = Server(url, workdir / "data")
            server.serve_args, server.ready_lines = ("--workers", str(workers)), workers
            server.start(timeout=120)
            try:
                held = open_runs(server, clients, "workers benchmark", "bench-workers")
                wall, srv, me, pg = (
                    time.perf_counter(),
                    server.cpu_seconds(),
                    time.process_time(),
                    postgres_cpu(),
                )
                m = commands(server, held, warmup, duration)
                t = tallies[workers]
                t.wall += time.perf_counter() - wall
                t.server_cpu += server.cpu_seconds() - srv
                t.bench_cpu += time.process_time() - me
                t.postgres_cpu += postgres_cpu() - pg
                t.commands += m.count
                t.seconds += m.seconds
                t.last = m
                server.check_alive()
                if m.errors:
                    report.warn(f"{workers} process(es): {m.errors} errors ({m.first_error})")
            finally:
                server.stop()
        one, two = (tallies[w].commands / max(tallies[w].seconds, 1e-9) for w in (1, 2))
        ratio = two / one if one else float("nan")
        verdict = "meets" if ratio >= TARGET else "BELOW"
        for workers, rate in ((1, one), (2, two)):
            t = tallies[workers]
            notes = f"{describe(t.last, 'lat')}; {t.cpu()}" if t.last else t.cpu()
            report.rows.append(
                Row(
                    store,
                    f"POST events, 1 event/cmd, {workers} process{'es' if workers > 1 else ''}",
                    str(clients),
                    fmt_rate(rate),
                    fmt_rate(one) if workers == 2 else "-",
                    f"{ratio:.2f}" if workers == 2 else "-",
                    notes + (f"; {verdict} the target" if workers == 2 else ""),
                )
            )

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s windows")
    parser.add_argument("--duration", type=float, help="seconds per round (8; 2 with --quick)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--stores", default="postgres", help="postgres (the scale-out store)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parse_with_stores(parser, argv)
    duration = args.duration or (2.0 if args.quick else 8.0)
    fact = f"{args.clients} clients, 4 rounds (1, 2, 2, 1 processes) of {duration:g} s"
    return run_benchmark(
        SETUP, args.stores, args.pg_url, fact, bench(args.clients, duration, args.warmup)
    )


if __name__ == "__main__":
    sys.exit(main())
