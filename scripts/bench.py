#!/usr/bin/env python3
"""Every benchmark in one command (`make bench`): each script in turn, on both stores, each
figure beside its baseline from the same run, gathered into one table.

    .venv/bin/python scripts/bench.py [--quick] [--only reads,resume] [--out bench-results]

Writes `bench-results/<UTC time>.md` and `.json` (and `latest.md` / `latest.json`): per
benchmark its command, the machine facts of its header, its rows (store, measure,
concurrency, value, baseline, ratio, the 1-minute load average when the figure was taken,
notes: latencies, CPU, whether a target is met), its failures and warnings; each script's
own printed report beside them (`<time>/<name>.txt`). Before each benchmark it waits, up to a
minute, for the machine to be quiet (85 % idle over 2 s; not with `--quick`), so that one
benchmark's aftermath does not land on the next one's figures (a note says when it was not).
`--quick` runs the headline figures with short windows and small stores (under two minutes
on 2 cores): a smoke run, not figures to quote. Progress goes to stderr. Exit status: 0, or
1 when any benchmark failed or warned.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchload import ROOT
from benchreport import JSON_REPORT, progress

# name: (script, the full run's flags, the quick run's flags, or None: not in --quick)
BENCHMARKS: dict[str, tuple[str, list[str], list[str] | None]] = {
    "spine": ("bench_spine.py", [], ["--quick", "--duration", "1", "--warmup", "0.3"]),
    "runners": ("bench_runners.py", [], ["--quick", "--duration", "1", "--repeats", "10"]),
    "reads": ("bench_reads.py", [], ["--runs", "500", "--duration", "0.7", "--warmup", "0.2"]),
    "resume": ("bench_resume.py", [], ["--sizes", "1000,20000"]),
    "workers": ("bench_workers.py", [], ["--quick", "--duration", "1.5", "--clients", "64"]),
    "fanout": ("bench_fanout.py", [], ["--quick", "--subscribers", "1000", "--stores", "postgres"]),
    "audit": ("bench_audit.py", [], None),
    "board": ("bench_board.py", [], None),
    "coordination": ("bench_coordination.py", [], None),
    "ui": ("bench_ui.py", [], None),
}
# Before each benchmark, wait (up to QUIET_WAIT s) for the machine to be QUIET_IDLE idle over
# one QUIET_WINDOW: what the previous one left running (PostgreSQL writing back a dropped
# schema's pages, autovacuum, a server's last seconds) otherwise lands on the next figures.
QUIET_IDLE, QUIET_WINDOW, QUIET_WAIT = 0.85, 2.0, 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the headline figures, < 2 min")
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"--only takes {', '.join(BENCHMARKS)}; not {', '.join(sorted(unknown))}")
    if args.quick:
        names = [n for n in names if BENCHMARKS[n][2] is not None]

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = args.out / stamp
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = []
    for name in names:
        script, full, quick = BENCHMARKS[name]
        flags = quick if args.quick and quick is not None else full
        quiet = None if args.quick else wait_for_quiet(QUIET_WAIT)  # (a smoke run: no wait)
        result = run_one(name, script, flags, folder)
        if quiet is not None:
            waited, idle = quiet
            result["quiet"] = {
                "waited_seconds": round(waited, 1),
                "idle": None if idle is None else round(idle, 2),
            }
            if idle is not None and idle < QUIET_IDLE:
                result.setdefault("notes", []).append(
                    f"started on a busy machine: {idle:.0%} idle after {waited:.0f} s of waiting"
                )
        results.append(result)
    wall = time.monotonic() - started
    summary = {
        "started": stamp,
        "mode": "quick" if args.quick else "full",
        "wall_seconds": round(wall, 1),
        "benchmarks": results,
    }
    text = json.dumps(summary, indent=1) + "\n"
    markdown = render(summary)
    for base in (stamp, "latest"):
        (args.out / f"{base}.json").write_text(text)
        (args.out / f"{base}.md").write_text(markdown)
    progress(f"{len(results)} benchmarks in {wall:.0f} s: {args.out / stamp}.md")
    return 0 if all(r["status"] == 0 for r in results) else 1


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of every CPU together, from /proc/stat: user, nice, system,
    idle, iowait, irq, softirq, steal (guest time is inside user already). Waiting on the
    disk is not idle here: a database writing back is what the wait is for."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:9]]
    return fields[3], sum(fields)


def wait_for_quiet(limit: float) -> tuple[float, float | None]:
    """Wait until the CPUs were QUIET_IDLE idle over a QUIET_WINDOW, at most `limit` s;
    (the seconds waited, the check's own window included; the idle share of the last
    window, None where /proc/stat cannot tell)."""
    started = time.monotonic()
    if not os.path.exists("/proc/stat"):
        return 0.0, None
    while True:
        idle0, total0 = cpu_times()
        time.sleep(QUIET_WINDOW)
        idle1, total1 = cpu_times()
        idle = (idle1 - idle0) / max(total1 - total0, 1)
        waited = time.monotonic() - started
        if idle >= QUIET_IDLE or waited >= limit:
            progress(f"machine {idle:.0%} idle after {waited:.0f} s")
            return waited, idle


def run_one(name: str, script: str, flags: list[str], folder: Path) -> dict:
    """One benchmark script in a subprocess: its JSON report, or what went wrong."""
    command = [sys.executable, str(ROOT / "scripts" / script), *flags]
    progress(f"== {name}: {' '.join(command[1:])}")
    report_file = folder / f"{name}.json"
    with open(folder / f"{name}.txt", "w") as printed:
        status = subprocess.call(
            command, stdout=printed, env={**os.environ, JSON_REPORT: str(report_file)}
        )
    result: dict = {"name": name, "command": " ".join(command), "status": status}
    try:
        result |= json.loads(report_file.read_text())
        result["status"] = status
    except (OSError, ValueError):
        result["failures"] = [f"{script} wrote no report (exit status {status})"]
    return result


def render(summary: dict) -> str:
    """The gathered reports as markdown."""
    lines = [
        f"# runledger benchmarks, {summary['started']} ({summary['mode']})",
        "",
        f"{len(summary['benchmarks'])} benchmarks in {summary['wall_seconds']:.0f} s. Each "
        "figure is measured beside its baseline in the same run; `load` is the 1-minute load "
        "average when it was taken (2 cores: the load generator and the server share them).",
    ]
    for bench in summary["benchmarks"]:
        lines += ["", f"## {bench['name']}: {bench.get('title', '')}", ""]
        lines.append(f"`{bench['command']}` (exit status {bench['status']})")
        if bench.get("quiet", {}).get("idle") is not None:
            q = bench["quiet"]
            lines.append(
                f"(started after {q['waited_seconds']:g} s of waiting for a quiet machine: "
                f"{q['idle']:.0%} idle)"
            )
        lines.append("")
        lines += [f"    {fact}" for fact in bench.get("facts", [])]
        rows = bench.get("rows", [])
        if rows:
            lines += [
                "",
                "| store | measure | conc | value | baseline | ratio | load | notes |",
                "|---|---|--:|--:|--:|--:|--:|---|",
            ]
            for r in rows:
                cells = [
                    r["store"],
                    r["measure"],
                    r["concurrency"],
                    r["value"],
                    r["baseline"],
                    r["ratio"],
                    f"{r['load']:.2f}",
                    r["notes"],
                ]
                lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        if bench.get("legend"):
            lines += ["", bench["legend"]]
        for kind in ("failures", "warnings", "notes"):
            for item in bench.get(kind, []):
                lines.append(f"- {kind[:-1]}: {item}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
