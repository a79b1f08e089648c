#!/usr/bin/env python3
"""Benchmark the runner path over real HTTP, on SQLite and PostgreSQL, against raw baselines.

For each store, in one run, it starts `runledger serve` in a subprocess and measures:

1. claim-to-first-event latency: a runner long-polls `POST /api/runner/claim`; a user submits
   a run; (a) submit acknowledged → claim answered (how fast a waiting runner wakes) and
   (b) claim answered → first runner event acknowledged (`POST /api/runs/{id}/events`, one
   event), repeated; p50/p99 of (a), (b) and of their sum per repetition;
2. ingestion throughput: 1 and 4 runners, each on its own claimed run, posting batches of 100
   `tool.output` events (~100 bytes of data each) for a fixed window, in events/s;
3. the raw baselines, interleaved with (2) at the same concurrency: on PostgreSQL psycopg with
   `LOCK TABLE … IN EXCLUSIVE MODE; INSERT` (100 rows) `; COMMIT` on a scratch table shaped
   like the event table; on SQLite the stdlib sqlite3 on a WAL file, `BEGIN IMMEDIATE;
   INSERT` (100 rows) `; COMMIT`. Each ingestion figure is printed as a ratio of these.

    .venv/bin/python scripts/bench_runners.py [--quick] [--duration 8] [--stores sqlite,postgres]

Progress goes to stderr, the report to stdout. The exit status is 1 when a measurement failed
or a correctness check (an error answer, a wrong sequence, a claim of the wrong run) warned,
130 when interrupted (SIGINT/SIGTERM; servers, temporary files and the schema are removed).
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchload import (
    Baseline,
    BenchError,
    Measured,
    Op,
    combine,
    raw_baseline,
    stored_output_size,
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
    JSON_HEADERS,
    RUNNER_KEY,
    USER_KEY,
    Held,
    LeanClient,
    Server,
    claim_run,
    cpu_mark,
    cpu_text,
    open_runs,
    report_no_changes,
    submit_run,
)

BATCH = 100  # events per POST and rows per baseline transaction
OUTPUT_TOPIC = "runledger:run.output"  # the engine's topic for runner output events
MAX_CONSECUTIVE_ERRORS = 20
# Per flag left out: (its value with --quick, without). See planned.
PLAN_DEFAULTS = {
    "duration": (1.5, 8.0),
    "warmup": (0.3, 0.5),
    "repeats": (10, 50),
    "rounds": (1, 2),
}
PARK_DELAY = 0.2  # seconds between sending the claim and submitting: the claim is parked
SLOW_WAKE = 0.4  # a wake this slow suggests the claim slept out its 0.5 s re-check
RUNNER_ID = "bench-runner"
LOAD = Baseline(
    "bench_raw_events", OUTPUT_TOPIC, BATCH, max_consecutive_errors=MAX_CONSECUTIVE_ERRORS
)
TXN = f"{BATCH}-event txn"  # the latency label of a throughput row
SETUP = Setup(
    title="runledger runner-path benchmark",
    packages=("httpx", "uvicorn", "starlette", "eventsourcing", "psycopg", "orjson"),
    pg_shown=("synchronous_commit", "fsync", "shared_buffers"),
    code=True,  # the header names the commit measured
    legend="ratio = HTTP ingestion / raw baseline of the same store and concurrency (target on "
    "PostgreSQL: >= 0.50); latencies are client wall clock, p50 / p99 over the repetitions.",
    tmp_prefix="runledger-bench-runners-",
    partial_on_interrupt=True,  # print what was measured before a SIGINT/SIGTERM
    announce_drop=True,
)


@dataclass(frozen=True)
class Plan:
    """How long and how hard to push."""

    duration: float  # per case, split over `rounds` alternating baseline/HTTP slices
    warmup: float  # per slice
    clients: tuple[int, ...]
    repeats: int
    rounds: int

    @property
    def slice(self) -> float:
        """The timed seconds of one slice."""
        return self.duration / self.rounds

    def summary(self) -> str:
        """The plan as the header's `plan:` line says it."""
        return (
            f"{self.repeats} claim-latency repetitions (claim parked {PARK_DELAY:g} s before "
            f"each submit); ingestion and baselines {self.duration:g} s per case and side in "
            f"{self.rounds} alternating slice(s) (baseline, HTTP, …) after {self.warmup:g} s "
            f"warm-up each, {'/'.join(map(str, self.clients))} clients, {BATCH} events per "
            "request/transaction; load generator shares the machine with the server"
        )


def output_event(i: int) -> dict[str, Any]:
    """One `tool.output` runner event whose data is about 100 bytes of JSON."""
    head = {"stream": "stdout", "n": i, "text": ""}
    filler = max(0, 100 - len(orjson.dumps(head)))
    return {"type": "tool.output", "data": {**head, "text": ("line of tool output " * 6)[:filler]}}


BATCH_EVENTS = [output_event(k) for k in range(BATCH)]  # one ingestion request's events


# -- the runner path -------------------------------------------------------------------------


def close_runs(server: Server, runs: list[Held]) -> None:
    """Report every run finished, so no claimable or held work is left behind."""
    with server.client(RUNNER_KEY) as runner:
        for run in runs:
            report_no_changes(runner, run.run_id, run.token)


def ingest(server: Server, runs: list[Held], plan: Plan, report: Report) -> Measured:
    """Each client posts 100-event `tool.output` batches to its own run; counts events."""

    wrong: list[str] = []

    def open_worker(i: int) -> tuple[Op, Op]:
        run = runs[i]
        client = LeanClient(server, RUNNER_KEY)
        path = f"/api/runs/{run.run_id}/events"
        # Like the baseline's constant state, the batch is made once: the load generator
        # shares the machine with the server, so its own work is kept small.
        body = orjson.dumps({"fencing_token": run.token, "events": BATCH_EVENTS})

        def op() -> None:
            status, answer = client.post(path, body)
            if status != 200:
                raise BenchError(f"{status} {answer[:200]!r}")
            got = int(orjson.loads(answer)["sequence"])
            if got != run.sequence + BATCH:
                wrong.append(f"run {run.run_id}: sequence {got} after {run.sequence}")
            run.sequence = got

        return op, client.close

    m = timed_workers(len(runs), open_worker, plan.warmup, plan.slice, MAX_CONSECUTIVE_ERRORS)
    if wrong:
        report.warn(f"{len(wrong)} batches did not move the sequence by {BATCH}: {wrong[:3]}")
    return Measured(m.count * BATCH, m.seconds, m.errors, m.latencies, m.first_error)


@dataclass
class Latency:
    """Per repetition: submit acknowledged → claim answered, claim → first event acknowledged."""

    wake: list[float] = field(default_factory=list)
    first_event: list[float] = field(default_factory=list)
    submit_rtt: list[float] = field(default_factory=list)
    early: int = 0  # the claim answered before the submit's answer reached the client


def claim_latency(server: Server, repeats: int, report: Report, store: str) -> Latency:
    """A parked long-poll claim, a submission, the first event: timed `repeats` times."""
    out = Latency()
    event = orjson.dumps(output_event(0))

    def runner_side(runner: httpx.Client) -> tuple[float, float, dict[str, Any]]:
        lease = claim_run(runner, 20, RUNNER_ID)
        answered = time.perf_counter()
        run_id, token = lease["run"]["run_id"], int(lease["fencing_token"])
        body = b'{"fencing_token": %d, "events": [%s]}' % (token, event)
        r = runner.post(f"/api/runs/{run_id}/events", content=body, headers=JSON_HEADERS)
        acked = time.perf_counter()
        if r.status_code != 200:
            raise BenchError(f"first event: {r.status_code} {r.text[:300]}")
        return answered, acked, lease

    with (
        server.client(USER_KEY) as user,
        server.client(RUNNER_KEY) as runner,
        ThreadPoolExecutor(1, thread_name_prefix="runner") as pool,
    ):
        # Warm both connections and the server's code paths once, untimed.
        run_id = submit_run(user, "warm-up")
        lease = claim_run(runner, 5, RUNNER_ID)
        report_no_changes(runner, lease["run"]["run_id"], int(lease["fencing_token"]))
        gc.collect()
        gc.disable()
        try:
            for i in range(repeats):
                future = pool.submit(runner_side, runner)
                time.sleep(PARK_DELAY)
                if future.done():
                    future.result()  # raises what went wrong
                    raise BenchError("the claim answered before any run was submitted")
                sent = time.perf_counter()
                run_id = submit_run(user, f"latency run {i}")
                acked = time.perf_counter()
                answered, event_acked, lease = future.result(timeout=60)
                if lease["run"]["run_id"] != run_id:
                    report.warn(f"{store}: the waiting runner claimed another run than submitted")
                out.wake.append(answered - acked)
                out.first_event.append(event_acked - answered)
                out.submit_rtt.append(acked - sent)
                out.early += answered < acked
                report_no_changes(runner, lease["run"]["run_id"], int(lease["fencing_token"]))
        finally:
            gc.enable()
    return out


# -- one store ---------------------------------------------------------------------------------


def ingestion_case(
    store: str, url: str, tmp: Path, server: Server, n: int, plan: Plan, report: Report
) -> None:
    """Raw baseline and HTTP ingestion at one concurrency, in alternating slices (ABAB…).

    The machine is shared with the database and whatever else runs: alternating slices make
    slow drifts in its load fall on both sides of the ratio alike.
    """
    runs = open_runs(server, n, "ingestion run", RUNNER_ID)
    bases: list[Measured] = []
    https: list[Measured] = []
    base_cpu = http_cpu = 0.0
    srv_cpu = 0.0
    try:
        for k in range(plan.rounds):
            progress(f"{store}: raw baseline, {n} connection(s), slice {k + 1}/{plan.rounds}")
            before = time.process_time()
            bases.append(raw_baseline(store, url, tmp, n, plan.warmup, plan.slice, LOAD))
            base_cpu += time.process_time() - before
            progress(f"{store}: HTTP ingestion, {n} runner(s), slice {k + 1}/{plan.rounds}")
            mark = cpu_mark(server)
            https.append(ingest(server, runs, plan, report))
            after = cpu_mark(server)
            http_cpu += after[1] - mark[1]
            srv_cpu += after[2] - mark[2]
            server.check_alive()
    finally:
        close_runs(server, runs)
    base, http = combine(bases), combine(https)
    base_rate = base.rate * BATCH
    wall = sum(plan.warmup + plan.slice for _ in range(plan.rounds))
    name = (
        "raw LOCK+INSERT 100+COMMIT"
        if store == "postgres"
        else "raw BEGIN IMM+INSERT 100+COMMIT (WAL)"
    )
    notes = f"{describe(base, TXN)}; cpu bench {100 * base_cpu / wall:.0f}%"
    report.rows.append(Row(store, name, str(n), fmt_rate(base_rate), notes=notes))
    slices = ", ".join(
        f"{h.rate / (b.rate * BATCH):.2f}" if b.rate else "n/a"
        for b, h in zip(bases, https, strict=True)
    )
    notes = (
        f"{describe(http, TXN)}; cpu srv {100 * srv_cpu / wall:.0f}% bench "
        f"{100 * http_cpu / wall:.0f}%; ratio per slice {slices}"
    )
    ratio = f"{http.rate / base_rate:.2f}" if base_rate else "n/a"
    measure = f"POST events, {BATCH}/batch"
    report.rows.append(
        Row(store, measure, str(n), fmt_rate(http.rate), fmt_rate(base_rate), ratio, notes)
    )
    for what, m in (("baseline", base), ("ingestion", http)):
        if m.errors:
            report.warn(f"{store} {what} ({n}): {m.errors} errors, first: {m.first_error}")
        if m.count == 0:
            report.warn(f"{store} {what} ({n}): no transaction finished inside the window")


def bench_store(store: str, url: str, tmp: Path, plan: Plan, report: Report, code: Path) -> None:
    """Claim latency, then baseline and ingestion at each concurrency, for one store."""
    server = Server(url, tmp / "data", client_timeout=60, root=code)
    progress(f"{store}: starting runledger serve")
    try:
        server.start_for(store)

        progress(f"{store}: claim-to-first-event latency, {plan.repeats} repetitions")
        mark = cpu_mark(server)
        lat = claim_latency(server, plan.repeats, report, store)
        cpu = cpu_text(mark, cpu_mark(server))
        server.check_alive()
        sums = [a + b for a, b in zip(lat.wake, lat.first_event, strict=True)]
        notes = {
            "submit ack → claim answered": (
                f"n={len(lat.wake)}, max {fmt_ms(max(lat.wake))}, "
                f"{sum(w > SLOW_WAKE for w in lat.wake)} over {SLOW_WAKE * 1000:.0f} ms, "
                f"{lat.early} before the submit's own answer; submit RTT p50 "
                f"{fmt_ms(percentile(lat.submit_rtt, 50))}"
            ),
            "claim answered → 1st event ack": f"max {fmt_ms(max(lat.first_event))}; {cpu}",
            "sum (per repetition)": f"max {fmt_ms(max(sums))}",
        }
        for (measure, note), values in zip(
            notes.items(), (lat.wake, lat.first_event, sums), strict=True
        ):
            p50, p99 = percentile(values, 50), percentile(values, 99)
            value = f"{fmt_ms(p50)} / {fmt_ms(p99)}"
            report.rows.append(Row(store, f"{measure} p50/p99", "1", value, notes=note))

        for n in plan.clients:
            ingestion_case(store, url, tmp, server, n, plan, report)
        report.notes.append(
            f"{store}: {stored_output_size(url, store, OUTPUT_TOPIC)} (baseline rows: 200 B)"
        )
    finally:
        started_ok = server.proc is not None and server.proc.poll() is None
        code = server.stop()
        if started_ok and code not in (0, None, -signal.SIGTERM):
            report.warn(f"{store}: server exited with code {code} on SIGTERM")
        report.server_findings += [f"{store}: {line}" for line in server.findings()]


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, help="timed seconds per throughput case and side (8)"
    )
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per slice (0.5)")
    parser.add_argument("--repeats", type=int, help="claim-latency repetitions (50)")
    parser.add_argument(
        "--rounds", type=int, help="alternating baseline/HTTP slices per throughput case (2)"
    )
    parser.add_argument("--stores", default="postgres,sqlite", help="postgres,sqlite")
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL URL (a fresh schema is made)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    return parse_with_stores(parser, argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """Defaults, shortened by --quick, overridden by explicit flags."""
    return Plan(**planned(args, PLAN_DEFAULTS), clients=(1, 4))


def main(argv: list[str] | None = None) -> int:
    """Run every measurement on every requested store and print the report."""
    args = parse_args(argv)
    plan, code = make_plan(args), args.code_dir
    return run_benchmark(
        SETUP,
        args.stores,
        args.pg_url,
        plan.summary(),
        lambda store, url, workdir, report: bench_store(store, url, workdir, plan, report, code),
        code,
    )


if __name__ == "__main__":
    sys.exit(main())
