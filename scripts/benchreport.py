"""The result table and the driver: run one benchmark over its stores, then print the report.

`bench_spine.py` and `bench_runners.py` import it with `benchload` and `benchserver` (Python puts
scripts/ on the path when one of them runs); each keeps only what is specific to its own
measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchfacts import machine_facts
from benchload import ROOT, STOP, Measured

DEFAULT_PG_URL = os.environ.get(
    "RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# Where run_benchmark also writes its report as JSON (scripts/bench.py sets it for each).
JSON_REPORT = "RUNLEDGER_BENCH_JSON"


# -- rows and numbers ------------------------------------------------------------------------


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
    # The 1-minute load average when the figure was recorded (right after its measurement).
    load: float = field(default_factory=lambda: os.getloadavg()[0])


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
    """Parse the command line, turning `--stores a,b` into a checked list; adds `--code-dir`."""
    parser.add_argument(
        "--code-dir",
        type=lambda text: Path(text).resolve(),
        default=ROOT,
        help="a checkout whose code the server runs (default: this one)",
    )
    args = parser.parse_args(argv)
    if not (args.code_dir / "api" / "cli.py").is_file():
        parser.error(f"--code-dir {args.code_dir} holds no api/cli.py")
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


# -- the report ----------------------------------------------------------------------------


def load_average(report: Report) -> tuple[float, float, float]:
    """The load average now; a note in the report when the machine is already busy."""
    load = os.getloadavg()
    if load[0] > 0.5 * (os.cpu_count() or 1):
        report.notes.append(
            f"other processes were busy when the benchmark started (1-min load "
            f"{load[0]:.2f} on {os.cpu_count()} CPUs): expect noisy figures"
        )
    return load


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
    headers = ("store", "measure", "conc", "value", "baseline", "ratio", "load", "notes")
    table = [headers] + [
        (r.store, r.measure, r.concurrency, r.value, r.baseline, r.ratio, f"{r.load:.2f}", r.notes)
        for r in report.rows
    ]
    widths = [max(len(row[c]) for row in table) for c in range(len(headers) - 1)]
    right = {2, 3, 4, 5, 6}
    for k, row in enumerate(table):
        cells = [
            cell.rjust(widths[c]) if c in right else cell.ljust(widths[c])
            for c, cell in enumerate(row[:-1])
        ]
        print("  ".join([*cells, row[-1]]))
        if k == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    print()
    print(legend + "; load = the 1-minute load average when the figure was taken")
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
    code_dir: Path = ROOT,
) -> int:
    """Measure every store in a temporary directory, print header and report; the exit status."""
    # 0; 1 when a measurement failed or a warning was printed; 130 when interrupted.
    handle_signals(setup.stop_workers)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=setup.tmp_prefix))
    report = Report()
    interrupted_by = ""
    load_start = load_average(report)
    code = code_dir if setup.code or code_dir != ROOT else None  # another's code: always said
    facts = machine_facts(tmp, pg_url, setup.packages, setup.pg_shown, code)
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
    status = 130 if interrupted_by else 1 if report.failures or report.warnings else 0
    if os.environ.get(JSON_REPORT):
        write_json(Path(os.environ[JSON_REPORT]), setup, facts, report, status, started)
    return status


def write_json(
    path: Path, setup: Setup, facts: list[str], report: Report, status: int, started: float
) -> None:
    """The report as JSON, for scripts/bench.py to gather."""
    document = {
        "title": setup.title,
        "facts": facts,
        "legend": setup.legend,
        "rows": [asdict(row) for row in report.rows],
        "failures": report.failures,
        "warnings": report.warnings,
        "notes": report.notes,
        "wall_seconds": round(time.monotonic() - started, 1),
        "status": status,
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
