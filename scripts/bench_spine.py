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
import math
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
from benchload import Baseline, BenchError, Measured, Op, raw_baseline, timed_workers
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    describe,
    fmt_ms,
    fmt_rate,
    parse_with_stores,
    percentile,
    planned,
    progress,
    run_benchmark,
)
from benchserver import (
    RUNNER_KEY,
    USER_KEY,
    Held,
    LeanClient,
    Server,
    cpu_mark,
    cpu_text,
    open_runs,
)
from benchsse import sse_latency

TOPIC = "bench.events:Recorded"
MAX_CONSECUTIVE_ERRORS = 50
# Per flag left out: (its value with --quick, without). See planned.
PLAN_DEFAULTS = {"duration": (1.0, 5.0), "warmup": (0.3, 1.0), "sse_events": (30, 200)}
TASK, RUNNER_ID = "benchmark run", "bench"  # what open_runs submits and claims as
SETUP = Setup(
    title="runledger spine benchmark",
    packages=("httpx", "uvicorn", "starlette", "sse-starlette", "eventsourcing", "psycopg"),
    pg_shown=("synchronous_commit", "fsync", "max_connections"),
    legend="ratio = HTTP throughput / raw baseline of the same store and concurrency; "
    "SSE latency = receive - send wall clock per (event, subscriber).",
    stop_workers=True,  # on SIGINT/SIGTERM the load threads stop, and no report is printed
)


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

    def summary(self) -> str:
        """The plan as the header's `plan:` line says it."""
        return (
            f"throughput {self.warmup:g} s warm-up + {self.duration:g} s per case, clients "
            f"{'/'.join(map(str, self.clients))}; SSE {self.sse_events} events at "
            f"{self.sse_rate:g}/s to {'/'.join(map(str, self.subscribers))} subscribers; "
            "load generator shares the machine with the server"
        )


# -- command throughput ------------------------------------------------------------------------


def http_throughput(server: Server, targets: list[Held], plan: Plan) -> Measured:
    """One single-event `POST /api/runs/{id}/events` after another from each client."""

    def open_worker(i: int) -> tuple[Op, Op]:
        run = targets[i]
        client = LeanClient(server, RUNNER_KEY)  # httpx would take the server's CPU
        path = f"/api/runs/{run.run_id}/events"
        n = [0]

        def op() -> None:
            n[0] += 1
            event = {"type": "log", "data": {"line": "benchmark output line", "n": n[0]}}
            body = orjson.dumps({"fencing_token": run.token, "events": [event]})
            status, answer = client.post(path, body)
            if status != 200:
                raise BenchError(f"{status} {answer[:200]!r}")

        return op, client.close

    return timed_workers(
        len(targets), open_worker, plan.warmup, plan.duration, MAX_CONSECUTIVE_ERRORS
    )


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
            load = Baseline("bench_events", TOPIC, notify=notify)
            m = raw_baseline(store, url, tmp, n, plan.warmup, plan.duration, load)
            if store == "postgres":
                name = "raw LOCK+INSERT+NOTIFY+COMMIT" if notify else "raw LOCK+INSERT+COMMIT"
            else:
                name = "raw INSERT+COMMIT (WAL)"
            if not notify:
                baselines[n] = m.rate
            # (not PostgreSQL's CPU: the baseline's connections, and their server
            # processes, are gone by the second mark)
            notes = f"{describe(m, 'lat')}; {cpu_text(mark, cpu_mark(None))}"
            report.rows.append(Row(store, name, str(n), fmt_rate(m.rate), notes=notes))
            if m.errors:
                report.warn(f"{store} baseline ({n}): {m.errors} errors, first: {m.first_error}")

    server = Server(url, tmp / "data", args.poll_interval, root=args.code_dir)
    progress(f"{store}: starting runledger serve ({url})")
    try:
        server.start_for(store)

        cases = [(n, False) for n in plan.clients]
        if plan.one_run:
            cases.append((max(plan.clients), True))
        for n, shared in cases:
            progress(f"{store}: HTTP throughput, {n} client(s){' on ONE run' if shared else ''}")
            targets = open_runs(server, 1 if shared else n, TASK, RUNNER_ID)
            mark = cpu_mark(server)
            m = http_throughput(server, targets * n if shared else targets, plan)
            cpu = cpu_text(mark, cpu_mark(server), (m.total, "cmd"), store == "postgres")
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
                    f"{describe(m, 'lat')}; {cpu}",
                )
            )
            if m.errors:
                report.warn(f"{store} {measure} ({n} clients): {m.errors} errors: {m.first_error}")
            if m.count == 0:
                report.warn(f"{store} {measure} ({n} clients): no command finished in the window")

        for n in plan.subscribers:
            progress(f"{store}: SSE latency, {n} subscriber(s), {plan.sse_events} events")
            mark = cpu_mark(server)
            s = sse_latency(server, n, plan.sse_events, plan.sse_rate, TASK, RUNNER_ID)
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
        report.server_findings += [
            f"{store}: {line}" for line in server.findings(drop_timestamps=True)
        ]


# -- main ----------------------------------------------------------------------------------


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
    return parse_with_stores(parser, argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """Defaults, shortened by --quick, overridden by explicit flags."""
    return Plan(
        **planned(args, PLAN_DEFAULTS),
        clients=(1, 16),
        subscribers=(1, 100),
        sse_rate=args.sse_rate,
        one_run=True,
        notify_variant=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run every measurement on every requested store and print the report."""
    args = parse_args(argv)
    plan = make_plan(args)

    def bench(store: str, url: str, workdir: Path, report: Report) -> None:
        bench_store(store, url, workdir, plan, args, report)

    return run_benchmark(SETUP, args.stores, args.pg_url, plan.summary(), bench, args.code_dir)


if __name__ == "__main__":
    sys.exit(main())
