#!/usr/bin/env python3
"""Benchmark one checkout's write path against another's (a change against the commit
before it), alternating in one run.

The machine's speed drifts by more than most changes are worth between two runs, so the
two checkouts take turns (A B, B A, A B, …, `--rounds` times): each turn a fresh
`runledger serve` of that checkout's code on the same store posts, from `--clients`
clients with a claimed run each (16 for commands, 4 for batches), single-event commands
(`--case commands`) or 100-event batches (`--case batches`) for `--duration` seconds after
a warm-up. Rows: each side's
rate, summed over its turns, with its server's CPU per command (work the load left it, the
projections, included) and each turn's rate; the ratio is the change (`--code-dir`, this
checkout by default) over the baseline (`--baseline-dir`).

    .venv/bin/python scripts/bench_ab.py --baseline-dir /tmp/old [--code-dir .]
        [--case commands,batches] [--rounds 6] [--duration 5] [--clients N]
        [--stores postgres]

(Make the baseline with `git worktree add /tmp/old HEAD~1`; it needs no venv of its own.)
Progress goes to stderr, the table to stdout; exit status 1 when a measurement failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench_spine import http_throughput
from benchload import Measured, alternate, combine
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    fmt_rate,
    parse_with_stores,
    progress,
    run_benchmark,
)
from benchserver import Server, open_runs

SETUP = Setup(
    title="runledger A/B benchmark: one checkout's write path against another's",
    packages=("uvicorn", "starlette", "eventsourcing", "psycopg"),
    pg_shown=("synchronous_commit", "fsync"),
    code=True,
    stop_workers=True,
    legend="value = the change (--code-dir), baseline = --baseline-dir, each a fresh server "
    "per turn on the same store, turns alternating in the same run; ratio = value / "
    "baseline; CPU = the server's per command, the projections it finished after the "
    "load included",
)
BATCH = 100  # events per command of the batches case
CLIENTS = {"commands": 16, "batches": 4}  # unless --clients says


def bench(
    cases: list[str],
    rounds: int,
    duration: float,
    clients: int | None,
    code: Path,
    baseline: Path,
) -> Callable[[str, str, Path, Report], None]:
    def run(store: str, url: str, workdir: Path, report: Report) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        for case in cases:
            n = clients or CLIENTS[case]
            sides = {"change": code, "baseline": baseline}
            parts, cpu = ab_case(store, url, workdir, case, n, rounds, duration, sides)
            add_row(report, store, case, n, parts, cpu)

    return run


def ab_case(
    store: str,
    url: str,
    workdir: Path,
    case: str,
    clients: int,
    rounds: int,
    duration: float,
    sides: dict[str, Path],
) -> tuple[dict[str, list[Measured]], dict[str, list[float]]]:
    """Each side's turns, alternating, and its server's CPU per turn."""
    per_command = BATCH if case == "batches" else 1
    cpu: dict[str, list[float]] = {side: [] for side in sides}

    def turn(side: str) -> Callable[[], Measured]:
        def measure() -> Measured:
            server = Server(url, workdir / "data", root=sides[side])
            server.start(timeout=120)
            try:
                targets = open_runs(server, clients, "a/b", "bench-ab")
                server.wait_quiet()
                before = server.cpu_seconds()
                m = http_throughput(server, targets, 0.5, duration, per_command)
                server.wait_quiet()
                cpu[side].append(server.cpu_seconds() - before)
                server.check_alive()
            finally:
                server.stop()
            return m

        return measure

    parts, _ = alternate(
        {side: turn(side) for side in sides},
        rounds,
        lambda _: (),
        lambda side, k: progress(f"{store}: {case}, {side}, round {k}/{rounds}"),
    )
    return parts, cpu


def add_row(
    report: Report,
    store: str,
    case: str,
    clients: int,
    parts: dict[str, list[Measured]],
    cpu: dict[str, list[float]],
) -> None:
    change, base = combine(parts["change"]), combine(parts["baseline"])
    for side, m in (("change", change), ("baseline", base)):
        if m.errors:
            report.warn(f"{store} {case}, {side}: {m.errors} errors: {m.first_error}")

    def per_command(side: str, m: Measured) -> str:
        return f"{1000 * sum(cpu[side]) / max(m.total, 1):.3f} ms"

    def turns(side: str) -> str:
        return " / ".join(f"{p.rate:,.0f}" for p in parts[side])

    unit = f"{BATCH}-event commands" if case == "batches" else "single-event commands"
    report.rows.append(
        Row(
            store,
            f"{unit}/s",
            str(clients),
            fmt_rate(change.rate),
            fmt_rate(base.rate),
            f"{change.rate / base.rate:.2f}" if base.rate else "n/a",
            f"server CPU per command {per_command('change', change)} (baseline "
            f"{per_command('baseline', base)}); turns {turns('change')} (baseline "
            f"{turns('baseline')})",
        )
    )


def commit_of(checkout: Path) -> str:
    """The checkout's commit, as `git log -1` says it (and whether it has changes)."""
    git = ["git", "-C", str(checkout)]
    done = subprocess.run([*git, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    if done.returncode != 0:
        return "(not a git checkout)"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    return done.stdout.strip() + ("; with uncommitted changes" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline-dir",
        required=True,
        type=lambda text: Path(text).resolve(),
        help="the checkout to compare with (another commit's worktree)",
    )
    parser.add_argument("--case", default="commands,batches", help="commands and/or batches")
    parser.add_argument("--rounds", type=int, default=6, help="turns of each side (6)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per turn (5)")
    parser.add_argument("--clients", type=int, help="clients (16 for commands, 4 for batches)")
    parser.add_argument("--stores", default="postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parse_with_stores(parser, argv)
    if not (args.baseline_dir / "api" / "cli.py").is_file():
        parser.error(f"--baseline-dir {args.baseline_dir} holds no api/cli.py")
    cases = [c.strip() for c in args.case.split(",") if c.strip()]
    if not cases or set(cases) - {"commands", "batches"}:
        parser.error("--case takes commands and/or batches")
    fact = (
        f"{', '.join(cases)}: {args.rounds} turns of {args.duration:g} s per side, "
        f"alternating; baseline {args.baseline_dir} at {commit_of(args.baseline_dir)}"
    )
    plan = bench(cases, args.rounds, args.duration, args.clients, args.code_dir, args.baseline_dir)
    return run_benchmark(SETUP, args.stores, args.pg_url, fact, plan, args.code_dir)


if __name__ == "__main__":
    sys.exit(main())
