#!/usr/bin/env python3
"""Benchmark SSE fan-out: one run followed by many subscribers, against a bare sse-starlette
fan-out server in the same run.

For each subscriber count (1,000 and 5,000 by default) and each server (`runledger serve`
on the store, then `scripts/fanout_baseline.py`: sse-starlette alone, no database), in one
run: the subscribers connect (lean raw-socket HTTP/1.1 clients on one uvloop loop, in a
process of their own so that the writer's timing is not theirs), then one writer publishes
E events at R/s, each carrying its send time (by default 30 s of them and at least 40: 120
at 1,000 subscribers, so that one slow event is not a whole percent of the deliveries);
then the stream ends (`event: done`). Every subscriber must receive every event exactly
once, in order. Figures: delivery latency p50 / p99 (arrival of the frame's last byte -
send time, over every event and subscriber), and the server's CPU per delivery (its CPU
while the events were written, divided by events x subscribers). Targets (issue 14,
PostgreSQL, 1,000 subscribers): p99 <= 50 ms and <= 25 µs of CPU per delivery; 5,000
subscribers held with every event delivered exactly once.

    .venv/bin/python scripts/bench_fanout.py [--quick] [--subscribers 1000,5000]
        [--events N] [--rate 4] [--stores postgres,sqlite]

The descriptor limit is raised to its hard limit for the benchmark and its servers.
Progress goes to stderr, the table to stdout; exit status 1 when a measurement failed or a
stream lost, repeated or reordered an event.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from benchload import ROOT, BenchError
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    parse_with_stores,
    progress,
    run_benchmark,
)
from benchserver import (
    JSON_HEADERS,
    RUNNER_KEY,
    USER_KEY,
    Server,
    open_runs,
    processes_cpu,
    report_no_changes,
)
from fanout_subscribers import subscribe

from tests.serve import free_port

TARGETS = {"p99": 0.050, "cpu": 25e-6}
SECONDS = 30  # of events, by default
SETUP = Setup(
    title="runledger SSE fan-out benchmark (one run, many subscribers)",
    packages=("uvicorn", "starlette", "sse-starlette", "psycopg", "uvloop"),
    pg_shown=("synchronous_commit", "fsync"),
    code=True,
    stop_workers=True,
    legend="value = runledger serve; baseline = scripts/fanout_baseline.py (sse-starlette "
    "alone, no database) with the same subscribers and writer in the same run; latency = "
    "arrival of a frame's last byte - its send time, over every (event, subscriber); CPU = "
    "the server's CPU while the events were written / deliveries (targets on PostgreSQL at "
    "1,000 subscribers: p99 <= 50 ms, <= 25 µs per delivery)",
)


# -- one case: N subscribers on one server -----------------------------------------------------


@dataclass
class Fanout:
    """What one case measured."""

    deliveries: int
    expected: int
    p50: float
    p99: float
    cpu_per_delivery: float
    problems: list[str]


def fan_out(
    port: int,
    path: str,
    headers: dict[str, str],
    n: int,
    events: int,
    rate: float,
    pid: int,
    publish: Callable[[int], None],
    finish: Callable[[], None],
    workdir: Path,
) -> Fanout:
    """Subscribers in a process of their own; `publish(i)` events at `rate`; `finish()`."""
    out = workdir / f"subscribers-{n}-{port}.json"
    proc = multiprocessing.get_context("spawn").Process(
        target=subscribe, args=(port, path, headers, n, str(out))
    )
    proc.start()
    try:
        ready = Path(str(out) + ".ready")
        deadline = time.monotonic() + 300
        while not ready.exists():
            if not proc.is_alive() or time.monotonic() > deadline:
                raise BenchError(f"the {n} subscribers did not all connect")
            time.sleep(0.1)
        time.sleep(1.0)  # the last ones' streams are open on the server too
        cpu_before = processes_cpu(lambda found, _, __: found == pid)
        begin = time.perf_counter()
        for i in range(events):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            publish(i)
        time.sleep(min(5.0, 2 / rate))  # the last event's deliveries
        cpu = processes_cpu(lambda found, _, __: found == pid) - cpu_before
        finish()
        proc.join(600)
    finally:
        if proc.is_alive():
            proc.kill()
    verdict = json.loads(out.read_text())
    if not verdict["deliveries"]:
        raise BenchError(f"no event reached any subscriber: {verdict['problems'][:3]}")
    return Fanout(
        verdict["deliveries"],
        events * n,
        verdict["p50"],
        verdict["p99"],
        cpu / max(verdict["deliveries"], 1),
        verdict["problems"],
    )


def on_runledger(
    url: str, workdir: Path, n: int, events: int, rate: float, code: Path = ROOT
) -> tuple[Fanout, Server]:
    server = Server(url, workdir / "data", root=code)
    server.env["RUNLEDGER_MAX_STREAMS_PER_KEY"] = str(n + 10)
    server.start(timeout=120)
    try:
        return fan_out_on(server, workdir, n, events, rate), server
    finally:
        server.stop()


def fan_out_on(server: Server, workdir: Path, n: int, events: int, rate: float) -> Fanout:
    """The fan-out on a started server (its RUNLEDGER_MAX_STREAMS_PER_KEY above n): one
    new run, n subscribers, `events` log events at `rate`, then the run's report."""
    [run] = open_runs(server, 1, "fan-out", "bench-fanout")
    writer = server.client(RUNNER_KEY)
    events_path = f"/api/runs/{run.run_id}/events"

    def publish(i: int) -> None:
        event = {"type": "log", "data": {"bench_i": i, "sent": time.time()}}
        body = orjson.dumps({"fencing_token": run.token, "events": [event]})
        r = writer.post(events_path, content=body, headers=JSON_HEADERS)
        if r.status_code != 200:
            raise BenchError(f"writer: {r.status_code} {r.text[:200]}")

    def finish() -> None:
        report_no_changes(writer, run.run_id, run.token)

    assert server.proc is not None
    headers = {"Authorization": f"Bearer {USER_KEY}", "Accept": "text/event-stream"}
    path = f"/api/runs/{run.run_id}/stream"
    try:
        result = fan_out(
            server.port, path, headers, n, events, rate, server.proc.pid, publish, finish, workdir
        )
    finally:
        writer.close()
    server.check_alive()
    return result


def on_baseline(workdir: Path, n: int, events: int, rate: float) -> Fanout:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "fanout_baseline.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("/subscribers")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise BenchError("the baseline server did not start") from None
                time.sleep(0.1)

        def publish(i: int) -> None:
            client.post("/publish", json={"bench_i": i, "sent": time.time()})

        def finish() -> None:
            client.post("/done")

        result = fan_out(port, "/stream", {}, n, events, rate, proc.pid, publish, finish, workdir)
        client.close()
        return result
    finally:
        proc.terminate()
        proc.wait(30)


# -- the report ------------------------------------------------------------------------------


def bench(
    counts: list[int], given: int | None, rate: float, code: Path = ROOT
) -> Callable[[str, str, Path, Report], None]:
    def run(store: str, url: str, workdir: Path, report: Report) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        for n in counts:
            pace = rate * min(1.0, 1000 / n)  # the same fan-out work per second at any n
            events = given or max(40, round(pace * SECONDS))
            progress(f"{store}: {n:,} subscribers, runledger ({events} events at {pace:g}/s)")
            ours, _ = on_runledger(url, workdir, n, events, pace, code)
            progress(f"{store}: {n:,} subscribers, bare sse-starlette")
            base = on_baseline(workdir, n, events, pace)
            for name, result in (("runledger", ours), ("baseline", base)):
                missing = result.expected - result.deliveries
                if result.problems or missing:
                    report.warn(
                        f"{store}, {n:,} subscribers, {name}: {missing} deliveries missing; "
                        + "; ".join(result.problems[:3])
                    )
            target = store == "postgres" and n == 1000
            for pct, ours_s, base_s in (("p50", ours.p50, base.p50), ("p99", ours.p99, base.p99)):
                verdict = ""
                if target and pct == "p99":
                    met = ours_s <= TARGETS["p99"]
                    verdict = f"; {'meets' if met else 'MISSES'} the <= 50 ms target"
                report.rows.append(
                    Row(
                        store,
                        f"SSE delivery latency {pct}",
                        f"{n:,}",
                        f"{1000 * ours_s:.1f} ms",
                        f"{1000 * base_s:.1f} ms",
                        f"{ours_s / base_s:.2f}" if base_s else "n/a",
                        f"{ours.deliveries:,}/{ours.expected:,} delivered exactly once, in "
                        f"order; {events} events at {pace:g}/s{verdict}",
                    )
                )
            verdict = ""
            if target:
                met = ours.cpu_per_delivery <= TARGETS["cpu"]
                verdict = f"; {'meets' if met else 'MISSES'} the <= 25 µs target"
            report.rows.append(
                Row(
                    store,
                    "server CPU per delivery",
                    f"{n:,}",
                    f"{1e6 * ours.cpu_per_delivery:.1f} µs",
                    f"{1e6 * base.cpu_per_delivery:.1f} µs",
                    f"{ours.cpu_per_delivery / base.cpu_per_delivery:.2f}",
                    f"the server process's CPU while the events were written{verdict}",
                )
            )

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 and 1,000 subscribers")
    parser.add_argument("--subscribers", help="comma-separated counts (1000,5000)")
    parser.add_argument(
        "--events", type=int, help=f"events the writer publishes ({SECONDS} s' worth, >= 40)"
    )
    parser.add_argument("--rate", type=float, default=4.0, help="events/s at 1,000 subscribers")
    parser.add_argument("--stores", default="postgres,sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parse_with_stores(parser, argv)
    if args.subscribers:
        counts = [int(c) for c in args.subscribers.split(",")]
    else:
        counts = [200, 1000] if args.quick else [1000, 5000]
    events = args.events or (15 if args.quick else None)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    if hard < max(counts) + 1000:
        parser.error(f"the descriptor limit ({hard}) is too low for {max(counts):,} subscribers")
    amount = f"{events} events" if events else f"{SECONDS} s of events (at least 40)"
    fact = (
        f"{', '.join(f'{c:,}' for c in counts)} subscribers; {amount}, "
        f"{args.rate:g}/s at 1,000 subscribers (scaled by 1,000/n above that)"
    )
    plan = bench(counts, events, args.rate, args.code_dir)
    return run_benchmark(SETUP, args.stores, args.pg_url, fact, plan, args.code_dir)


if __name__ == "__main__":
    sys.exit(main())
