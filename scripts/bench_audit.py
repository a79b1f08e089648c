#!/usr/bin/env python3
"""Benchmark what the audit (hash chains, the Merkle log) costs, on SQLite and PostgreSQL.

For each store, in one run:

1. the write path with and without hashing: `runledger serve` as it is, the same code with
   the Merkle log off ("chain only") and with all hashing off ("plain"), for the benchmark
   only (scripts/serve_unhashed.py), each on its own fresh database, all running; runners
   post single-event commands and 100-event batches to their own runs over HTTP, in
   alternating slices; events/s of each and the ratios to plain. An API process (`--role
   api`, which hashes each event as it stores it) with a worker process beside it (`--role
   worker`: projections and the Merkle log): "chain" (the hashing on the write path, held
   to the target, ≥ 0.90) and "chain + log" (the whole audit: on this machine the log's
   appends share the same cores); and one process doing all of it, reported beside them;
2. a store of N events (200,000) filled through an in-process engine (with hashes), then,
   in this process: the raw read and decode of every event (the floor); the Merkle log's
   append (`merkle_log.append` in the writer's batches); its rebuild from the events
   (`LogWriter.rebuild`); a full verification (every stream's chain and the tree's root);
   each in events/s and as a ratio of the floor (target for rebuild and verify ≥ 0.25);
3. proof latency against a server on that store: inclusion and consistency proofs, and a
   run's audit (`GET /api/runs/{id}/audit`, a run of ~1,000 events), p50 / p99.

    .venv/bin/python scripts/bench_audit.py [--quick] [--events 200000] [--stores sqlite,postgres]

Progress goes to stderr, the report to stdout. Exit status 1 when a measurement failed or a
check warned (an error answer, a wrong sequence, a verification that found a flaw), 130 when
interrupted (servers, temporary files and schemas are removed).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import benchaudit
from benchaudit_write import TARGET_WRITE, WRITE_CASES, write_path
from benchload import ROOT
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

from adapters.audit_writer import LogWriter
from adapters.checkpoints import load_or_create

PLAN_DEFAULTS = {
    "events": (5_000, 200_000),
    "duration": (1.5, 8.0),
    "warmup": (0.3, 0.5),
    "rounds": (1, 4),
    "proofs": (30, 300),
}
TARGET_READ = 0.25
SETUP = Setup(
    title="runledger audit benchmark (hash chains and the Merkle log)",
    packages=("uvicorn", "starlette", "eventsourcing", "psycopg", "orjson", "rfc8785"),
    pg_shown=("synchronous_commit", "fsync", "shared_buffers"),
    code=True,
    legend="write path: value = with hashing (the chain alone, or the chain and the Merkle "
    "log), baseline = the same server with hashing off (scripts/serve_unhashed.py), ratio = "
    f"hashed / plain (target for the chain >= {TARGET_WRITE:.2f}); "
    "store passes: baseline = reading and decoding every event, ratio = rate / that "
    f"(target for rebuild and verify >= {TARGET_READ:.2f}); latencies are client wall "
    "clock, p50 / p99.",
    tmp_prefix="runledger-bench-audit-",
    partial_on_interrupt=True,
    announce_drop=True,
)


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    events: int  # in the store
    duration: float  # timed seconds per write case and side, over `rounds` slices each
    warmup: float  # per slice
    rounds: int
    proofs: int  # requests per proof kind

    def summary(self) -> str:
        """The header's `plan:` line."""
        cases = ", ".join(f"{n} ev/POST x {c} client(s)" for n, c in WRITE_CASES)
        return (
            f"write path: {cases}; {self.duration:g} s per case and side in {self.rounds} "
            f"round(s) of alternating slices (hashed/plain, then plain/hashed) after "
            f"{self.warmup:g} s warm-up each; a store of {self.events:,} events (runs of "
            f"{benchaudit.EVENTS_PER_RUN}); {self.proofs} requests per proof kind; the load "
            "generator shares the machine with the servers"
        )


# -- 2. the store, read whole in this process -------------------------------------------------


def pass_row(store: str, measure: str, p: benchaudit.Pass, floor: float, target: bool) -> Row:
    """A store pass as a row: its rate, the floor's, the ratio (against a target or not)."""
    ratio = f"{p.rate / floor:.2f}" if floor else "n/a"
    notes = f"{p.events:,} events in {p.seconds:.2f} s, this process's CPU {p.cpu:.2f} s"
    if target and floor and p.rate / floor < TARGET_READ:
        notes += f"; BELOW the {TARGET_READ:.2f} target"
    return Row(store, measure, "1", fmt_rate(p.rate), fmt_rate(floor), ratio, notes)


def store_passes(
    store: str, url: str, data: Path, plan: Plan, report: Report
) -> tuple[list[int], list[str]]:
    """Fill the store, then time each pass over it; the events' positions, the runs' ids."""
    from api.config import Config
    from api.service.runtime import Runtime

    progress(f"{store}: filling a store of {plan.events:,} events (in-process engine, hashed)")
    filled, run_ids = benchaudit.fill(url, data, plan.events)
    report.rows.append(
        Row(
            store,
            "fill: engine record_output (hashed)",
            "1",
            fmt_rate(filled.rate),
            notes=f"{filled.events:,} events in {filled.seconds:.1f} s "
            f"(runs of {benchaudit.EVENTS_PER_RUN}, {benchaudit.OUTPUT_BATCH} outputs per command)",
        )
    )
    runtime = Runtime(Config(database_url=url, data_dir=data))
    try:
        db = runtime.db
        progress(f"{store}: read + decode every event")
        reads = [benchaudit.read_decode(db)]
        leaves = benchaudit.all_leaves(db)
        progress(f"{store}: Merkle log append")
        appended = benchaudit.append_log(db, leaves)
        progress(f"{store}: Merkle log rebuild")
        writer = LogWriter(db, load_or_create(data, None, runtime.signer.name))
        rebuilt = benchaudit.rebuild_log(db, writer)
        progress(f"{store}: verify")
        verified, found = benchaudit.verify(db)
        progress(f"{store}: read + decode again")
        reads.append(benchaudit.read_decode(db))
    finally:
        runtime.close()
    floor = max(r.rate for r in reads)
    report.rows.append(
        Row(
            store,
            "read + decode every event (floor)",
            "1",
            fmt_rate(floor),
            notes="best of 2 passes (before and after the others): "
            + ", ".join(fmt_rate(r.rate) for r in reads),
        )
    )
    report.rows.append(
        pass_row(store, "Merkle log append (writer batches)", appended, floor, False)
    )
    report.rows.append(pass_row(store, "rebuild: LogWriter.rebuild", rebuilt, floor, True))
    report.rows.append(pass_row(store, "verify: chains + Merkle root", verified, floor, True))
    if found != "ok":
        report.warn(f"{store}: verification found a flaw: {found}")
    if rebuilt.events != len(leaves) or verified.events != len(leaves):
        report.warn(
            f"{store}: {len(leaves)} events, rebuilt {rebuilt.events}, verified {verified.events}"
        )
    return [leaf.position for leaf in leaves], [str(r) for r in run_ids]


# -- main -------------------------------------------------------------------------------------


def bench_store(
    store: str, url: str, workdir: Path, pg_url: str, plan: Plan, report: Report
) -> None:
    """The write path, then the store's passes and proofs, for one store."""
    write_path(store, pg_url, workdir, plan, report)
    data = workdir / "store-data"
    stored = store_passes(store, url, data, plan, report)
    benchaudit.proofs(store, url, data, stored, plan.proofs, report)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events in the store (200,000)")
    parser.add_argument("--duration", type=float, help="timed s per write case and side (8)")
    parser.add_argument("--warmup", type=float, help="warm-up s per slice (0.5)")
    parser.add_argument("--rounds", type=int, help="rounds of alternating slices (4)")
    parser.add_argument("--proofs", type=int, help="requests per proof kind (300)")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL URL (fresh schemas)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    return parse_with_stores(parser, argv)


def main(argv: list[str] | None = None) -> int:
    """Measure every store and print the report."""
    args = parse_args(argv)
    if args.code_dir != ROOT:
        raise SystemExit("bench_audit.py measures this checkout only (no --code-dir)")
    plan = Plan(**planned(args, PLAN_DEFAULTS))
    return run_benchmark(
        SETUP,
        args.stores,
        args.pg_url,
        plan.summary(),
        lambda store, url, workdir, report: bench_store(
            store, url, workdir, args.pg_url, plan, report
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
