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
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import benchaudit
import orjson
from bench_runners import close_runs, combine, output_event
from benchload import ROOT, BenchError, Measured, Op, timed_workers
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    describe,
    fmt_rate,
    parse_with_stores,
    planned,
    postgres_schema,
    progress,
    run_benchmark,
)
from benchserver import RUNNER_KEY, Held, LeanClient, Server, open_runs, postgres_cpu

from adapters.audit_writer import LogWriter
from adapters.checkpoints import load_or_create

PLAN_DEFAULTS = {
    "events": (5_000, 200_000),
    "duration": (1.5, 8.0),
    "warmup": (0.3, 0.5),
    "rounds": (1, 4),
    "proofs": (30, 300),
}
WRITE_CASES = ((1, 1), (1, 4), (100, 1), (100, 4))  # (events per POST, clients)
UNHASHED = (str(ROOT / "scripts" / "serve_unhashed.py"),)
UNLOGGED = (*UNHASHED, "--keep-chain")  # the hash chain, without the Merkle log
RUNNER_ID = "bench-runner"
TARGET_WRITE, TARGET_READ = 0.90, 0.25
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


@contextlib.contextmanager
def fresh_url(store: str, pg_url: str, workdir: Path, name: str) -> Iterator[str]:
    """Another empty database of the same store (a SQLite file, a PostgreSQL schema)."""
    if store == "postgres":
        with postgres_schema(pg_url, announce=True) as url:
            yield url
        return
    path = workdir / name / "events.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    yield f"sqlite:///{path}"


# -- 1. the write path, hashed and plain ------------------------------------------------------


def post_events(server: Server, runs: list[Held], per_post: int, plan: Plan) -> Measured:
    """Each client posts `per_post` output events per request to its own run; counts events."""
    events = [output_event(k) for k in range(per_post)]

    def open_worker(i: int) -> tuple[Op, Op]:
        run, client = runs[i], LeanClient(server, RUNNER_KEY)
        path = f"/api/runs/{run.run_id}/events"
        body = orjson.dumps({"fencing_token": run.token, "events": events})

        def op() -> None:
            status, answer = client.post(path, body)
            if status != 200:
                raise BenchError(f"{status} {answer[:200]!r}")
            got = int(orjson.loads(answer)["sequence"])
            if got != run.sequence + per_post:
                raise BenchError(f"sequence {got} after {run.sequence} + {per_post}")
            run.sequence = got

        return op, client.close

    m = timed_workers(len(runs), open_worker, plan.warmup, plan.duration / plan.rounds, 20)
    return Measured(
        m.count * per_post, m.seconds, m.errors, m.latencies, m.first_error, m.total * per_post
    )


@dataclass(frozen=True)
class Side:
    """One server set under load: the process the clients post to, and the worker that
    projects and appends the Merkle log beside it (None: the same process does all)."""

    api: Server
    worker: Server | None = None

    def cpu_seconds(self) -> tuple[float, float]:
        """Its processes' CPU so far: the API process's, the worker's (0 with none)."""
        return self.api.cpu_seconds(), self.worker.cpu_seconds() if self.worker else 0.0

    def quiet(self, window: float = 0.25, limit: float = 10.0) -> None:
        """Wait (up to `limit` s) until its processes use under 10 % of a core over a
        `window`: after the load stops, the worker still projects and appends the Merkle
        log (up to a settle, a second, later), which belongs to this side's figures."""
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            before = sum(self.cpu_seconds())
            time.sleep(window)
            if sum(self.cpu_seconds()) - before < 0.1 * window:
                return

    def check_alive(self) -> None:
        self.api.check_alive()
        if self.worker is not None:
            self.worker.check_alive()


# The comparisons of each write case: (label, hashed side, plain side, held to the target).
# "api + worker": the write path alone (`serve --role api`: it hashes each event as it stores
# it), the projections and the Merkle log in a `--role worker` process beside it, the
# deployment docs/operations.md describes. "chain": the hashing on the write path, the
# Merkle log off (the target: an asynchronous writer, its append rate measured on
# its own below); "chain + log": the whole audit, whose log appends take the same two
# cores on this machine. "one process": `serve` doing all of it.
COMPARISONS = (
    ("api + worker, chain", "chain-api", "plain-api", True),
    ("api + worker, chain + log", "hashed-api", "plain-api", False),
    ("one process, chain + log", "hashed", "plain", False),
)


def cpu_per_event(side: str, cpu: list[float], events: int, store: str) -> str:
    """A side's server CPU per event: in all, and split when a worker was beside the API;
    PostgreSQL's beside it (every postgres process on the machine, over the side's slices)."""
    per = [1000 * seconds / max(1, events) for seconds in cpu]
    split = f" (api {per[0]:.3f} + worker {per[1]:.3f})" if cpu[1] else ""
    database = f", postgres {per[2]:.3f}" if store == "postgres" else ""
    return f"{side} {per[0] + per[1]:.3f}{split}{database}"


def write_case(
    store: str, sides: dict[str, Side], per_post: int, n: int, plan: Plan, report: Report
) -> None:
    """One case on every side, in alternating slices; a row per comparison."""
    runs = {
        name: open_runs(side.api, n, f"write {per_post}x{n}", RUNNER_ID)
        for name, side in sides.items()
    }
    parts: dict[str, list[Measured]] = {name: [] for name in sides}
    cpu = {name: [0.0, 0.0, 0.0] for name in sides}  # the API's, the worker's, PostgreSQL's
    names = list(sides)
    try:
        for k in range(plan.rounds):
            for name in names if k % 2 == 0 else names[::-1]:
                progress(f"{store}: {per_post} ev/POST, {n} client(s), {name}, round {k + 1}")
                before = (*sides[name].cpu_seconds(), postgres_cpu())
                parts[name].append(post_events(sides[name].api, runs[name], per_post, plan))
                sides[name].quiet()  # its work after the load is its own, not the next side's
                after = (*sides[name].cpu_seconds(), postgres_cpu())
                for i in (0, 1, 2):
                    cpu[name][i] += after[i] - before[i]
                sides[name].check_alive()
    finally:
        for name, side in sides.items():
            close_runs(side.api, runs[name])
    for label, hashed_side, plain_side, targeted in COMPARISONS:
        if hashed_side not in sides or plain_side not in sides:
            continue  # (another group's)
        hashed, plain = combine(parts[hashed_side]), combine(parts[plain_side])
        per_round = ", ".join(
            f"{h.rate / p.rate:.2f}" if p.rate else "n/a"
            for h, p in zip(parts[hashed_side], parts[plain_side], strict=True)
        )
        cpu_note = "; ".join(
            cpu_per_event(side, cpu[name], sum(m.total for m in parts[name]), store)
            for side, name in (("hashed", hashed_side), ("plain", plain_side))
        )
        notes = (
            f"hashed {describe(hashed, 'request')}; plain {describe(plain, 'request')}; ratio "
            f"per round {per_round}; server ms CPU/event {cpu_note}"
        )
        ratio = f"{hashed.rate / plain.rate:.2f}" if plain.rate else "n/a"
        if targeted and plain.rate and hashed.rate / plain.rate < TARGET_WRITE:
            notes += f"; BELOW the {TARGET_WRITE:.2f} target"
        kind = "cmd" if per_post == 1 else "batch"
        measure = f"POST events, {per_post}/{kind}, {label}"
        report.rows.append(
            Row(store, measure, str(n), fmt_rate(hashed.rate), fmt_rate(plain.rate), ratio, notes)
        )
        for side, m in (("hashed", hashed), ("plain", plain)):
            if m.errors:
                report.warn(f"{store} {measure} {side} ({n}): {m.errors} errors: {m.first_error}")
            if m.count == 0:
                report.warn(f"{store} {measure} {side} ({n}): nothing finished inside the window")


# The server sets, one group at a time (all of them at once would pass PostgreSQL's
# connection limit): (side, kind of server, with a worker beside it).
SIDE_GROUPS = (
    (("chain-api", "chain", True), ("hashed-api", "hashed", True), ("plain-api", "plain", True)),
    (("hashed", "hashed", False), ("plain", "plain", False)),
)
LAUNCHERS = {"hashed": ("-m", "api.cli"), "chain": UNLOGGED, "plain": UNHASHED}


def write_path(store: str, pg_url: str, workdir: Path, plan: Plan, report: Report) -> None:
    """Every group of sides, each side on its own fresh database, then every write case."""
    for group in SIDE_GROUPS:
        with contextlib.ExitStack() as stack:
            sides, servers = open_sides(group, store, pg_url, workdir, stack)
            try:
                for made in servers:
                    made.start_for(store)
                for per_post, n in WRITE_CASES:
                    write_case(store, sides, per_post, n, plan, report)
            finally:
                for made in servers:
                    benchaudit.stop_server(made, store, report)


def open_sides(
    group: tuple[tuple[str, str, bool], ...],
    store: str,
    pg_url: str,
    workdir: Path,
    stack: contextlib.ExitStack,
) -> tuple[dict[str, Side], list[Server]]:
    """A group's sides, their servers not started yet (their databases dropped by `stack`)."""
    servers: list[Server] = []

    def server(name: str, kind: str, role: str | None = None, url: str = "") -> Server:
        url = url or stack.enter_context(fresh_url(store, pg_url, workdir, name))
        made = Server(url, workdir / f"{name}-data", client_timeout=60, launcher=LAUNCHERS[kind])
        if role is not None:
            made.env["RUNLEDGER_ROLE"] = role
        servers.append(made)
        return made

    sides: dict[str, Side] = {}
    for name, kind, split in group:
        if split:
            api = server(name, kind, "api")
            sides[name] = Side(api, server(f"{name}-worker", kind, "worker", api.database_url))
        else:
            sides[name] = Side(server(name, kind))
    return sides, servers


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
