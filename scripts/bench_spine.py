#!/usr/bin/env python3
"""Benchmark the spine over real HTTP, on SQLite and PostgreSQL, against raw database baselines.

For each store, in one run: it starts `runledger serve` in a subprocess and measures

1. single-event command throughput: `POST /api/runs/{id}/events` carrying one runner event,
   with 1 and 16 clients, each client on its own claimed run, against the raw baseline: one
   `INSERT; COMMIT` per event, on PostgreSQL under `LOCK TABLE … IN EXCLUSIVE MODE` (the
   event store's lock), on SQLite in a WAL file, with as many connections. The two take
   turns in slices (raw, HTTP, HTTP, raw, …) while the server idles through the raw ones,
   so that the machine's drift falls on both sides of the ratio alike; then 16 clients on
   one run, beside the same baseline, and on PostgreSQL the baseline with a NOTIFY;
2. SSE delivery latency (the writer's clock before the POST → the subscriber's clock when the
   frame arrives) for 1 and 100 subscribers of one run's stream, checking that every
   subscriber got every event exactly once and in order.

    .venv/bin/python scripts/bench_spine.py [--quick] [--duration 8] [--rounds 4]
        [--stores sqlite,postgres]

Progress goes to stderr, the report to stdout. The exit status is 1 when a measurement failed
or a correctness check (errors, lost, duplicated or reordered events) printed a warning, and
130 when interrupted (servers, schemas and temporary files are cleaned up first).
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
from benchload import (
    Baseline,
    BenchError,
    Measured,
    Op,
    alternate,
    combine,
    raw_baseline,
    timed_workers,
)
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
    postgres_cpu,
    wait_quiet,
)
from benchsse import sse_latency

TOPIC = "bench.events:Recorded"
MAX_CONSECUTIVE_ERRORS = 50
# Per flag left out: (its value with --quick, without). See planned.
PLAN_DEFAULTS = {
    "duration": (1.0, 8.0),
    "warmup": (0.3, 0.5),
    "rounds": (2, 4),
    "sse_events": (30, 200),
}
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

    duration: float  # per command case and side, split over `rounds` alternating slices
    warmup: float  # per slice
    rounds: int
    clients: tuple[int, ...]
    subscribers: tuple[int, ...]
    sse_events: int
    sse_rate: float
    one_run: bool
    notify_variant: bool

    @property
    def slice(self) -> float:
        """The timed seconds of one slice."""
        return self.duration / self.rounds

    def summary(self) -> str:
        """The plan as the header's `plan:` line says it."""
        return (
            f"commands and raw baseline {self.duration:g} s per case and side in {self.rounds} "
            f"alternating slices after {self.warmup:g} s warm-up each, clients "
            f"{'/'.join(map(str, self.clients))}; SSE {self.sse_events} events at "
            f"{self.sse_rate:g}/s to {'/'.join(map(str, self.subscribers))} subscribers; "
            "load generator shares the machine with the server"
        )


# -- command throughput ------------------------------------------------------------------------


def http_throughput(
    server: Server, targets: list[Held], warmup: float, seconds: float, per_command: int = 1
) -> Measured:
    """One `POST /api/runs/{id}/events` of `per_command` log events (1: a single-event
    command) after another from each client (one per run of `targets`), for `seconds` after
    `warmup`."""

    def open_worker(i: int) -> tuple[Op, Op]:
        run = targets[i]
        client = LeanClient(server, RUNNER_KEY)  # httpx would take the server's CPU
        path = f"/api/runs/{run.run_id}/events"
        n = [0]

        def op() -> None:
            n[0] += 1
            event = {"type": "log", "data": {"line": "benchmark output line", "n": n[0]}}
            body = orjson.dumps({"fencing_token": run.token, "events": [event] * per_command})
            status, answer = client.post(path, body)
            if status != 200:
                raise BenchError(f"{status} {answer[:200]!r}")

        return op, client.close

    return timed_workers(len(targets), open_worker, warmup, seconds, MAX_CONSECUTIVE_ERRORS)


def raw_name(store: str, notify: bool = False) -> str:
    """The raw baseline's row name."""
    if store == "postgres":
        return "raw LOCK+INSERT+NOTIFY+COMMIT" if notify else "raw LOCK+INSERT+COMMIT"
    return "raw INSERT+COMMIT (WAL)"


def command_case(
    store: str, url: str, tmp: Path, server: Server, n: int, plan: Plan, report: Report
) -> float:
    """The raw baseline and the server's commands at n clients, in alternating slices (raw,
    HTTP, HTTP, raw, …): the machine's speed drifts by more than the targets' margins over a
    minute, and alternating makes a drift fall on both sides of the ratio alike. An HTTP
    slice lasts until the server has finished its work (projections), which counts as the
    slice's; a raw slice, until PostgreSQL's processes are quiet again (the baseline's
    connections have ended), so that neither lands in the other's CPU. Returns the raw
    rate."""
    targets = open_runs(server, n, TASK, RUNNER_ID)
    load = Baseline("bench_events", TOPIC)

    def raw_slice() -> Measured:
        m = raw_baseline(store, url, tmp, n, plan.warmup, plan.slice, load)
        wait_quiet(postgres_cpu)
        return m

    def http_slice() -> Measured:
        m = http_throughput(server, targets, plan.warmup, plan.slice)
        server.wait_quiet()
        server.check_alive()
        return m

    parts, spent = alternate(
        {"raw": raw_slice, "http": http_slice},
        plan.rounds,
        lambda _: cpu_mark(server),
        lambda side, k: progress(
            f"{store}: {side} commands, {n} client(s), slice {k}/{plan.rounds}"
        ),
    )
    raws, https, raw_cpu, http_cpu = parts["raw"], parts["http"], spent["raw"], spent["http"]
    raw, http = combine(raws), combine(https)
    zero = (0.0, 0.0, 0.0, 0.0)
    # (the server idles through the raw slices; PostgreSQL's CPU is not given for them: the
    # baseline's connections, and their server processes, are gone by the second mark)
    notes = f"{describe(raw, 'lat')}; {cpu_text(zero, tuple(raw_cpu))}"
    report.rows.append(Row(store, raw_name(store), str(n), fmt_rate(raw.rate), notes=notes))
    per_slice = ", ".join(
        f"{h.rate / r.rate:.2f}" if r.rate else "n/a" for r, h in zip(raws, https, strict=True)
    )
    cpu = cpu_text(zero, tuple(http_cpu), (http.total, "cmd"), store == "postgres")
    notes = f"{describe(http, 'lat')}; {cpu}; ratio per slice {per_slice}"
    measure = "POST events, 1 event/cmd"
    ratio = f"{http.rate / raw.rate:.2f}" if raw.rate else "n/a"
    report.rows.append(
        Row(store, measure, str(n), fmt_rate(http.rate), fmt_rate(raw.rate), ratio, notes)
    )
    for what, m in (("baseline", raw), (measure, http)):
        if m.errors:
            report.warn(f"{store} {what} ({n} clients): {m.errors} errors: {m.first_error}")
        if m.count == 0:
            report.warn(f"{store} {what} ({n} clients): nothing finished in the window")
    return raw.rate


def bench_store(
    store: str, url: str, tmp: Path, plan: Plan, args: argparse.Namespace, report: Report
) -> None:
    """Commands against their raw baseline, then SSE latency, for one store."""
    server = Server(url, tmp / "data", args.poll_interval, root=args.code_dir)
    progress(f"{store}: starting runledger serve ({url})")
    try:
        server.start_for(store)
        baselines = {
            n: command_case(store, url, tmp, server, n, plan, report) for n in plan.clients
        }

        if plan.one_run:  # one window, beside the raw rate of the same clients
            n = max(plan.clients)
            progress(f"{store}: HTTP throughput, {n} clients on ONE run")
            run = open_runs(server, 1, TASK, RUNNER_ID)
            mark = cpu_mark(server)
            m = http_throughput(server, run * n, plan.warmup, plan.duration)
            cpu = cpu_text(mark, cpu_mark(server), (m.total, "cmd"), store == "postgres")
            server.check_alive()
            base = baselines[n]
            measure = "POST events, 1 event/cmd, ONE run"
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

        if store == "postgres" and plan.notify_variant:
            # What the NOTIFY adds, for reference: one window each, once the server is idle
            # (not in alternating slices like the baseline above: compare with care).
            server.wait_quiet()
            for n in plan.clients:
                progress(f"{store}: baseline with NOTIFY, {n} connection(s)")
                mark = cpu_mark(None)
                load = Baseline("bench_events", TOPIC, notify=True)
                m = raw_baseline(store, url, tmp, n, plan.warmup, plan.duration, load)
                notes = f"{describe(m, 'lat')}; {cpu_text(mark, cpu_mark(None))}"
                name = raw_name(store, notify=True)
                report.rows.append(Row(store, name, str(n), fmt_rate(m.rate), notes=notes))
                if m.errors:
                    report.warn(f"{store} {name} ({n}): {m.errors} errors: {m.first_error}")

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
    parser.add_argument(
        "--duration", type=float, help="timed seconds per command case and side (8)"
    )
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per slice (0.5)")
    parser.add_argument("--rounds", type=int, help="alternating raw/HTTP slices per case (4)")
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
