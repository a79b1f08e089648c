#!/usr/bin/env python3
"""Benchmark the cyclic garbage collector's thresholds (`RUNLEDGER_GC_THRESHOLD`): the write
path's throughput and CPU against SSE fan-out latency, each setting beside the interpreter's
own in the same run.

A larger young-generation threshold makes the collector run less often (less CPU per
command) and for longer each time; a collection stops every open stream at once, so what
the commands gain could come out of SSE's delivery p99. Both are measured on the same
server: for each setting in turn (A B C, C B A, A B C, …, `--rounds` times), a fresh
`runledger serve` on the same store runs `--clients` clients posting single-event commands
for `--duration` seconds, idles, then streams `--events` events at `--rate`/s to
`--subscribers` subscribers of one run (scripts/bench_fanout.py's fan-out). The server's own
/metrics (runledger_gc_*) give the collector's time, collections and pauses per generation.

Rows per setting: commands/s (summed over rounds) with the server's CPU per command and the
collector's share of it; the worst round's SSE p99 and the server's CPU per delivery. The
baseline column is the interpreter's thresholds (the first setting, `python`).

    .venv/bin/python scripts/bench_gc.py [--quick] [--settings 'python;5000;20000']
        [--rounds 4] [--duration 4] [--clients 16] [--subscribers 1000] [--events 40]
        [--rate 4] [--stores postgres]

Progress goes to stderr, the table to stdout; exit status 1 when a measurement failed or a
stream lost, repeated or reordered an event.
"""

from __future__ import annotations

import argparse
import gc
import re
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_fanout import Fanout, fan_out_on
from bench_spine import http_throughput
from benchload import BenchError, Measured, alternate, combine
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    fmt_rate,
    parse_with_stores,
    planned,
    progress,
    run_benchmark,
)
from benchserver import USER_KEY, Server, open_runs

PYTHON = "python"  # the interpreter's own thresholds (700,10,10), given explicitly
PLAN_DEFAULTS = {  # per flag left out: (its value with --quick, without)
    "rounds": (2, 4),
    "duration": (1.5, 4.0),
    "subscribers": (300, 1000),
    "events": (12, 40),
}
SETUP = Setup(
    title="runledger collector thresholds benchmark (commands against SSE fan-out)",
    packages=("uvicorn", "starlette", "psycopg"),
    pg_shown=("synchronous_commit", "fsync"),
    code=True,
    stop_workers=True,
    legend="value = the setting's RUNLEDGER_GC_THRESHOLD; baseline = the interpreter's own "
    "thresholds, the same server and load, slices alternating in the same run; gc = the "
    "collector's time from the server's /metrics; collections per generation over every "
    "round (each server from its start: runs opened, commands, subscribers, fan-out), with "
    "their mean and longest pause; gc per delivery counts the subscribers' connecting too",
)
GC_LINE = re.compile(r'^runledger_gc_(\w+?)(?:_total)?\{generation="(\d)"\} ([0-9.e+-]+)$', re.M)


@dataclass
class Collector:
    """The server's runledger_gc_* figures at one moment."""

    seconds: list[float] = field(default_factory=lambda: [0.0] * 3)
    collections: list[float] = field(default_factory=lambda: [0.0] * 3)
    longest: list[float] = field(default_factory=lambda: [0.0] * 3)


def collector(server: Server) -> Collector:
    """Read the collector's figures off the server's /metrics."""
    with server.client(USER_KEY) as c:
        r = c.get("/metrics")
    if r.status_code != 200:
        raise BenchError(f"/metrics: {r.status_code} {r.text[:200]}")
    found, lines = Collector(), GC_LINE.findall(r.text)
    for name, generation, value in lines:
        if name == "longest_pause_seconds":
            found.longest[int(generation)] = float(value)
        elif name in ("seconds", "collections"):
            getattr(found, name)[int(generation)] = float(value)
    if not lines:
        raise BenchError("the server's /metrics has no runledger_gc_* lines")
    return found


@dataclass
class Slice:
    """One setting's round: commands, then the fan-out, on one fresh server."""

    commands: Measured
    command_cpu: float  # the server's CPU over the commands and the work they left it
    command_gc: float  # the collector's seconds of it
    fanout: Fanout
    fanout_gc: float
    collector: Collector  # since start, at the end: commands and fan-out


@dataclass
class Plan:
    settings: list[str]
    rounds: int
    duration: float
    clients: int
    subscribers: int
    events: int
    rate: float


def one_slice(url: str, workdir: Path, setting: str, plan: Plan, code: Path) -> Slice:
    server = Server(url, workdir / "data", root=code)
    server.env["RUNLEDGER_MAX_STREAMS_PER_KEY"] = str(plan.subscribers + 10)
    given = ",".join(map(str, gc.get_threshold())) if setting == PYTHON else setting
    server.env["RUNLEDGER_GC_THRESHOLD"] = given
    server.start(timeout=120)
    try:
        targets = open_runs(server, plan.clients, "gc benchmark", "bench-gc")
        server.wait_quiet()
        gc0, cpu0 = collector(server), server.cpu_seconds()
        commands = http_throughput(server, targets, 0.5, plan.duration)
        server.wait_quiet()
        gc1, cpu1 = collector(server), server.cpu_seconds()
        fanout = fan_out_on(server, workdir, plan.subscribers, plan.events, plan.rate)
        gc2 = collector(server)
    finally:
        server.stop()
    if commands.errors:
        raise BenchError(f"{setting}: {commands.errors} command errors: {commands.first_error}")
    return Slice(
        commands,
        cpu1 - cpu0,
        sum(gc1.seconds) - sum(gc0.seconds),
        fanout,
        sum(gc2.seconds) - sum(gc1.seconds),
        gc2,
    )


def bench(plan: Plan, code: Path) -> Callable[[str, str, Path, Report], None]:
    def run(store: str, url: str, workdir: Path, report: Report) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        slices: dict[str, list[Slice]] = {s: [] for s in plan.settings}

        def side(setting: str) -> Callable[[], Measured]:
            def measure() -> Measured:
                s = one_slice(url, workdir, setting, plan, code)
                slices[setting].append(s)
                return s.commands

            return measure

        alternate(
            {s: side(s) for s in plan.settings},
            plan.rounds,
            lambda _: (),
            lambda s, k: progress(f"{store}: gc threshold {s}, round {k}/{plan.rounds}"),
        )
        base = summarize(slices[plan.settings[0]])
        for setting in plan.settings:
            add_rows(report, store, setting, summarize(slices[setting]), base, plan)
            for k, s in enumerate(slices[setting], 1):
                missing = s.fanout.expected - s.fanout.deliveries
                if s.fanout.problems or missing:
                    report.warn(
                        f"{store}, {setting}, round {k}: {missing} deliveries missing; "
                        + "; ".join(s.fanout.problems[:3])
                    )

    return run


@dataclass
class Summary:
    commands: Measured
    rates: list[float]
    cpu_per_command: float
    gc_per_command: float
    p99s: list[float]
    cpu_per_delivery: float
    gc_per_delivery: float
    collections: list[float]  # per generation, over every round
    seconds: list[float]
    longest: list[float]

    def pauses(self) -> str:
        """Per generation: collections, mean and longest pause."""
        return ", ".join(
            f"gen{g} {n:,.0f}x {1000 * s / max(n, 1):.2f}/{1000 * m:.1f} ms"
            for g, (n, s, m) in enumerate(
                zip(self.collections, self.seconds, self.longest, strict=True)
            )
        )


def summarize(slices: list[Slice]) -> Summary:
    commands = combine([s.commands for s in slices])
    done = max(commands.total, 1)
    deliveries = max(sum(s.fanout.deliveries for s in slices), 1)
    return Summary(
        commands,
        [s.commands.rate for s in slices],
        sum(s.command_cpu for s in slices) / done,
        sum(s.command_gc for s in slices) / done,
        [s.fanout.p99 for s in slices],
        sum(s.fanout.cpu_per_delivery * s.fanout.deliveries for s in slices) / deliveries,
        sum(s.fanout_gc for s in slices) / deliveries,
        [sum(s.collector.collections[g] for s in slices) for g in range(3)],
        [sum(s.collector.seconds[g] for s in slices) for g in range(3)],
        [max(s.collector.longest[g] for s in slices) for g in range(3)],
    )


def add_rows(
    report: Report, store: str, setting: str, ours: Summary, base: Summary, plan: Plan
) -> None:
    rates = " / ".join(f"{r:,.0f}" for r in ours.rates)
    report.rows.append(
        Row(
            store,
            f"commands/s, gc {setting}",
            str(plan.clients),
            fmt_rate(ours.commands.rate),
            fmt_rate(base.commands.rate),
            f"{ours.commands.rate / base.commands.rate:.2f}" if base.commands.rate else "n/a",
            f"srv {1e6 * ours.cpu_per_command:.0f} µs CPU/cmd (base "
            f"{1e6 * base.cpu_per_command:.0f}), gc {1e6 * ours.gc_per_command:.1f} µs/cmd "
            f"(base {1e6 * base.gc_per_command:.1f}); rounds {rates}; collections "
            f"(mean/longest pause) {ours.pauses()}",
        )
    )
    p99s = " / ".join(f"{1000 * p:.1f}" for p in ours.p99s)
    worst, base_worst = max(ours.p99s), max(base.p99s)
    report.rows.append(
        Row(
            store,
            f"SSE p99 (worst round), gc {setting}",
            f"{plan.subscribers:,}",
            f"{1000 * worst:.1f} ms",
            f"{1000 * base_worst:.1f} ms",
            f"{worst / base_worst:.2f}" if base_worst else "n/a",
            f"rounds {p99s} ms; {plan.events} events at {plan.rate:g}/s",
        )
    )
    report.rows.append(
        Row(
            store,
            f"server CPU per delivery, gc {setting}",
            f"{plan.subscribers:,}",
            f"{1e6 * ours.cpu_per_delivery:.1f} µs",
            f"{1e6 * base.cpu_per_delivery:.1f} µs",
            f"{ours.cpu_per_delivery / base.cpu_per_delivery:.2f}"
            if base.cpu_per_delivery
            else "n/a",
            f"gc {1e6 * ours.gc_per_delivery:.2f} µs/delivery "
            f"(base {1e6 * base.gc_per_delivery:.2f})",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 short rounds, 300 subscribers")
    parser.add_argument(
        "--settings",
        default=f"{PYTHON};5000;20000",
        help="';'-separated RUNLEDGER_GC_THRESHOLD values, the first the baseline "
        f"('{PYTHON}': the interpreter's own); default {PYTHON};5000;20000",
    )
    parser.add_argument("--rounds", type=int, help="rounds of every setting (4)")
    parser.add_argument("--duration", type=float, help="seconds of commands per round (4)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--subscribers", type=int, help="subscribers of the fan-out (1000)")
    parser.add_argument("--events", type=int, help="events the fan-out's writer posts (40)")
    parser.add_argument("--rate", type=float, default=4.0, help="the fan-out's events/s")
    parser.add_argument("--stores", default="postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parse_with_stores(parser, argv)
    chosen = planned(args, PLAN_DEFAULTS)
    settings = [s.strip() for s in args.settings.replace(";", " ").split() if s.strip()]
    plan = Plan(
        settings,
        chosen["rounds"],
        chosen["duration"],
        args.clients,
        chosen["subscribers"],
        chosen["events"],
        args.rate,
    )
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    fact = (
        f"settings {' | '.join(settings)}, {plan.rounds} rounds alternating; commands "
        f"{plan.duration:g} s at {plan.clients} clients, then {plan.events} events at "
        f"{plan.rate:g}/s to {plan.subscribers:,} subscribers, per round"
    )
    return run_benchmark(
        SETUP, args.stores, args.pg_url, fact, bench(plan, args.code_dir), args.code_dir
    )


if __name__ == "__main__":
    sys.exit(main())
