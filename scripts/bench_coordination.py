#!/usr/bin/env python3
"""Benchmark coordinator dispatch over real HTTP, on SQLite and PostgreSQL, beside a plain
run's submit → claim latency measured in the same run.

For each store, one `runledger serve` subprocess, and the user's global SSE stream
(`/api/events/stream`, filtered to the types below) followed on a thread, each frame timed
on arrival:

1. baseline: a runner's long-poll claim is parked; 0.2 s later a plain run is submitted;
   submit acknowledged → claim answered (and → its `run.submitted` frame), p50/p99;
2. chain: coordinators whose plan is a chain s0 → s1 → … → s{n-1}; the runner holds child k
   and parks a claim; 0.2 s later child k's `no_changes` report is acknowledged → (a) the
   parked claim answers with child k+1 (the dependent became claimable: the figure to hold
   against the baseline), (b) `subtask.dispatched` of k+1 arrives on SSE, (c) child k+1's
   `run.submitted` arrives on SSE; p50/p99 over every link of every chain;
3. wide: a plan of 200 independent subtasks, repeated: from the PUT's answer until the
   200th `subtask.dispatched` and the 200th child's `run.submitted` arrive on SSE, until a
   claim sent right after the PUT's answer gets a child, and until all 200 are claimed
   (one runner, claims in a row); checked: every child claimed once, one per subtask;
4. chain beside busy plans: --idle-plans coordinators whose one child another runner holds
   (their plans stay `dispatching`, as while agents work), then one more chain as in 2.

    .venv/bin/python scripts/bench_coordination.py [--quick] [--chain 50] [--chains 2]

Progress goes to stderr, the report to stdout. Exit status 1 when a measurement failed or a
check warned, 130 when interrupted (servers, temporary files and the schema are removed).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from benchload import BenchError
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    fmt_ms,
    parse_with_stores,
    percentile,
    planned,
    progress,
    run_benchmark,
)
from benchserver import (
    RUNNER_KEY,
    USER_KEY,
    Server,
    claim_run,
    confirm,
    report_no_changes,
    submit_run,
)
from benchsse import Watcher

from domain.plans import child_run_id

PARK_DELAY = 0.2  # seconds between sending a claim and the write that should answer it
RUNNER_ID = "bench-coordination"
TYPES = ("run.submitted", "subtask.dispatched", "run.review_requested")  # followed on SSE
PLAN_DEFAULTS = {
    "repeats": (10, 50),
    "chain": (10, 50),
    "chains": (1, 2),
    "wide_repeats": (1, 3),
    "idle_plans": (20, 100),
}
SETUP = Setup(
    title="runledger coordinator dispatch benchmark",
    packages=("httpx", "httpx-sse", "uvicorn", "starlette", "eventsourcing", "psycopg"),
    pg_shown=("synchronous_commit", "fsync"),
    legend="p50 / p99 over the samples (wide: median / max over the repetitions); client wall "
    "clock; `claim answered` is a long-poll claim parked 0.2 s before the write, `on SSE` the "
    "frame's arrival on the user's global stream; ratio = p50 / the baseline's p50.",
    code=True,
    tmp_prefix="runledger-bench-coordination-",
    partial_on_interrupt=True,
    announce_drop=True,
)


@dataclass
class Samples:
    """Latencies in seconds, per measure."""

    by: dict[str, list[float]] = field(default_factory=dict)

    def add(self, measure: str, seconds: float) -> None:
        self.by.setdefault(measure, []).append(seconds)


def is_type(kind: str, run_id: str, **data: Any) -> Callable[[dict[str, Any]], bool]:
    """A frame matcher: this type on this run, with these data fields."""
    return lambda env: (
        env["type"] == kind
        and env["run_id"] == run_id
        and all(env["data"].get(k) == v for k, v in data.items())
    )


def coordinator(user: httpx.Client, subtasks: list[dict[str, Any]]) -> tuple[str, float]:
    """A plain run made a coordinator of `subtasks`; its id and when the PUT was answered."""
    run_id = submit_run(user, "bench plan")
    answer = user.put(
        f"/api/runs/{run_id}/work-plan", json={"subtasks": subtasks, "auto_approve_children": True}
    )
    acked = time.perf_counter()
    if answer.status_code != 201:
        raise BenchError(f"work plan: {answer.status_code} {answer.text[:300]}")
    return run_id, acked


def baseline(server: Server, watcher: Watcher, repeats: int, samples: Samples) -> None:
    """A parked claim, a plain run submitted: submit ack → claim answered, → SSE frame."""
    with (
        server.client(USER_KEY) as user,
        server.client(RUNNER_KEY) as runner,
        ThreadPoolExecutor(1) as pool,
    ):
        for i in range(repeats):
            parked = pool.submit(lambda: (claim_run(runner, 20, RUNNER_ID), time.perf_counter()))
            time.sleep(PARK_DELAY)
            if parked.done():
                raise BenchError(f"the claim answered before the submit: {parked.result()}")
            run_id = submit_run(user, f"plain {i}")
            acked = time.perf_counter()
            lease, answered = parked.result(60)
            if lease["run"]["run_id"] != run_id:
                raise BenchError("the parked claim got another run than submitted")
            samples.add("plain: submit ack → claim answered", answered - acked)
            seen = watcher.nth(is_type("run.submitted", run_id))
            samples.add("plain: submit ack → run.submitted on SSE", seen - acked)
            report_no_changes(runner, run_id, int(lease["fencing_token"]))


def chain(
    server: Server, watcher: Watcher, length: int, samples: Samples, label: str = "chain"
) -> None:
    """One chain s0 → … : per link, report ack → dependent claimed, dispatched, created."""
    keys = [f"s{k}" for k in range(length)]
    subtasks = [
        {"key": key, "title": key, "depends_on": keys[k - 1 : k]} for k, key in enumerate(keys)
    ]
    with (
        server.client(USER_KEY) as user,
        server.client(RUNNER_KEY) as runner,
        server.client(RUNNER_KEY) as parker,
        ThreadPoolExecutor(1) as pool,
    ):
        run_id, _ = coordinator(user, subtasks)
        child = partial_child(run_id)
        lease = claim_run(runner, 20, RUNNER_ID)
        for k in range(length):
            if lease["run"]["run_id"] != child(keys[k]):
                raise BenchError(f"claimed {lease['run']['run_id']}, not the child of {keys[k]}")
            token = int(lease["fencing_token"])
            if k == length - 1:
                report_no_changes(runner, child(keys[k]), token)
                acked = time.perf_counter()
                seen = watcher.nth(is_type("run.review_requested", run_id))
                samples.add(f"{label}: last report ack → review requested on SSE", seen - acked)
                return
            parked = pool.submit(lambda: (claim_run(parker, 20, RUNNER_ID), time.perf_counter()))
            time.sleep(PARK_DELAY)
            if parked.done():
                raise BenchError(f"a claim answered before the report: {parked.result()}")
            report_no_changes(runner, child(keys[k]), token)
            acked = time.perf_counter()
            lease, answered = parked.result(60)
            dispatched = watcher.nth(is_type("subtask.dispatched", run_id, key=keys[k + 1]))
            created = watcher.nth(is_type("run.submitted", child(keys[k + 1])))
            samples.add(f"{label}: report ack → dependent's claim answered", answered - acked)
            samples.add(f"{label}: report ack → subtask.dispatched on SSE", dispatched - acked)
            samples.add(f"{label}: report ack → child's run.submitted on SSE", created - acked)


def partial_child(run_id: str) -> Callable[[str], str]:
    """The child run id of a subtask key (round 1) of this coordinator."""
    return lambda key: str(child_run_id(UUID(run_id), key, 1))


def wide(server: Server, watcher: Watcher, n: int, samples: Samples, report: Report) -> None:
    """n independent subtasks: PUT answered → the n-th dispatched, the n-th child created,
    the first child claimed, all n claimed; then each child once, one per subtask."""
    subtasks = [{"key": f"w{k}", "title": f"w{k}", "depends_on": []} for k in range(n)]
    with server.client(USER_KEY) as user, server.client(RUNNER_KEY) as runner:
        run_id, acked = coordinator(user, subtasks)
        leases = [claim_run(runner, 20, RUNNER_ID)]
        first = time.perf_counter()
        while len(leases) < n:
            leases.append(claim_run(runner, 20, RUNNER_ID))
        drained = time.perf_counter()
        dispatched = watcher.nth(is_type("subtask.dispatched", run_id), n)
        created = watcher.nth(
            lambda env: (
                env["type"] == "run.submitted" and env["data"].get("parent_run_id") == run_id
            ),
            n,
        )
        samples.add(f"wide {n}: PUT ack → {n}th subtask.dispatched on SSE", dispatched - acked)
        samples.add(f"wide {n}: PUT ack → {n}th child's run.submitted on SSE", created - acked)
        samples.add(f"wide {n}: PUT ack → 1st child claimed (claim sent then)", first - acked)
        samples.add(f"wide {n}: PUT ack → all {n} claimed (one runner)", drained - acked)
        child = partial_child(run_id)
        claimed = [lease["run"]["run_id"] for lease in leases]
        if sorted(claimed) != sorted(child(s["key"]) for s in subtasks):
            report.warn(f"wide plan {run_id}: the claimed runs are not its {n} children, once each")
        for lease in leases:
            report_no_changes(runner, lease["run"]["run_id"], int(lease["fencing_token"]))
        listed = user.get("/api/runs", params={"parent_run_id": run_id, "limit": 500}).json()
        if len(listed["items"]) != n or len({r["subtask_key"] for r in listed["items"]}) != n:
            report.warn(f"wide plan {run_id}: {len(listed['items'])} children listed, not {n}")
        watcher.nth(is_type("run.review_requested", run_id), timeout=60)


def busy_chain(server: Server, watcher: Watcher, idle: int, length: int, samples: Samples) -> None:
    """`idle` coordinators of one subtask each, whose children another runner claimed and
    holds (agents at work: their plans stay `dispatching`), then one chain beside them.
    Each claim is confirmed, or the server would give it back (and the chain's runner would
    claim it) once RUNLEDGER_CLAIM_CONFIRM_SECONDS passed."""
    with server.client(USER_KEY) as user, server.client(RUNNER_KEY) as holder:
        for _ in range(idle):
            coordinator(user, [{"key": "x", "title": "x", "depends_on": []}])
            confirm(holder, claim_run(holder, 20, "holder"))
    chain(server, watcher, length, samples, f"chain, {idle} plans waiting")


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    repeats: int
    chain: int
    chains: int
    wide_repeats: int
    idle_plans: int
    wide: int = 200

    def summary(self) -> str:
        """The header's `plan:` line."""
        return (
            f"baseline {self.repeats} plain runs; {self.chains} chain(s) of {self.chain} "
            f"subtasks ({self.chains * (self.chain - 1)} links); {self.wide_repeats} plan(s) "
            f"of {self.wide} independent subtasks; one more chain beside {self.idle_plans} "
            f"plans waiting on held children; claims parked {PARK_DELAY:g} s before the "
            "write; one runner; the load generator shares the machine with the server"
        )


def add_rows(store: str, samples: Samples, wide_n: int, report: Report) -> None:
    """One row per measure; chain and plain rows against the plain claim's p50."""
    base = samples.by.get("plain: submit ack → claim answered", [])
    base_p50 = percentile(base, 50)
    for measure, values in samples.by.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        if measure.startswith("wide"):
            value = f"{fmt_ms(p50)} / {fmt_ms(max(values))}"
            notes = f"n={len(values)} plan(s) of {wide_n}"
            if "all" in measure:
                notes += f"; {wide_n / p50:,.0f} claims/s"
        else:
            value = f"{fmt_ms(p50)} / {fmt_ms(p99)}"
            notes = f"n={len(values)}, max {fmt_ms(max(values))}"
        baseline_text = ratio = "-"
        if "dependent's claim" in measure and base:
            baseline_text = f"{fmt_ms(base_p50)} / {fmt_ms(percentile(base, 99))}"
            ratio = f"{p50 / base_p50:.2f}"
        report.rows.append(Row(store, measure, "1", value, baseline_text, ratio, notes))


def bench_store(store: str, url: str, tmp: Path, plan: Plan, report: Report) -> None:
    """Baseline, chains, wide plans on one store."""
    server = Server(url, tmp / "data")
    progress(f"{store}: starting runledger serve")
    watcher: Watcher | None = None
    samples = Samples()
    try:
        server.start_for(store)
        watcher = Watcher(server, TYPES)
        with server.client(USER_KEY) as user, server.client(RUNNER_KEY) as runner:
            warm = submit_run(user, "warm-up")  # the stream is live once its frame arrives
            watcher.nth(is_type("run.submitted", warm))
            lease = claim_run(runner, 10, RUNNER_ID)
            report_no_changes(runner, warm, int(lease["fencing_token"]))
        gc.collect()
        gc.disable()
        progress(f"{store}: baseline, {plan.repeats} plain runs")
        baseline(server, watcher, plan.repeats, samples)
        for i in range(plan.chains):
            progress(f"{store}: chain {i + 1}/{plan.chains} of {plan.chain} subtasks")
            chain(server, watcher, plan.chain, samples)
        for i in range(plan.wide_repeats):
            progress(f"{store}: wide plan {i + 1}/{plan.wide_repeats} of {plan.wide} subtasks")
            wide(server, watcher, plan.wide, samples, report)
        if plan.idle_plans:
            progress(f"{store}: {plan.idle_plans} plans waiting, then a chain of {plan.chain}")
            busy_chain(server, watcher, plan.idle_plans, plan.chain, samples)
        server.check_alive()
    finally:
        gc.enable()
        add_rows(store, samples, plan.wide, report)
        if watcher is not None:
            watcher.close()
        server.stop()
        report.server_findings += [f"{store}: {line}" for line in server.findings()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="plain runs of the baseline (50)")
    parser.add_argument("--chain", type=int, help="subtasks per chain (50)")
    parser.add_argument("--chains", type=int, help="chains (2)")
    parser.add_argument("--wide-repeats", type=int, help="plans of 200 independent subtasks (3)")
    parser.add_argument(
        "--idle-plans", type=int, help="plans waiting on held children beside a chain (100)"
    )
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL URL (a fresh schema)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    return parse_with_stores(parser, argv)


def main(argv: list[str] | None = None) -> int:
    """Measure every store and print the report."""
    args = parse_args(argv)
    plan = Plan(**planned(args, PLAN_DEFAULTS))
    if plan.chain < 2:
        raise SystemExit("--chain must be at least 2")
    return run_benchmark(
        SETUP,
        args.stores,
        args.pg_url,
        plan.summary(),
        lambda store, url, workdir, report: bench_store(store, url, workdir, plan, report),
    )


if __name__ == "__main__":
    sys.exit(main())
