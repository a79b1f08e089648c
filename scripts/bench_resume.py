#!/usr/bin/env python3
"""Benchmark resuming a run's stream and time travel, over runs of very different lengths.

For each store, in one run: runs of 1,000, 100,000 and 1,000,000 events (filled by an
in-process engine in batches of 500, as a runner's output comes), then a server started
cold on that store (its read models caught up before it serves), and for each run:

- resume: `GET /api/runs/{id}/stream` with `Last-Event-ID` ten events before its end, the
  time until the first event frame arrives: once on the freshly started server (cold: no
  cache holds the run), then the median and p95 of the next REPEATS (warm);
- time travel: `GET /api/runs/{id}?at_sequence=N` for N at the start, the middle and the
  end, the first request (cold) and the median of REPEATS;
- beside them, the baseline of the same run: `GET /api/runs/{id}` (its live view, one
  indexed read), and the server's CPU per request.

The targets (issue 14, PostgreSQL): resume < 50 ms cold and < 20 ms warm at 100,000 events;
`at_sequence` < 100 ms at any N of the 1,000,000-event run; the cost flat in the history.

    .venv/bin/python scripts/bench_resume.py [--quick] [--sizes 1000,100000,1000000]
        [--stores sqlite,postgres]

--quick: runs of 1,000, 10,000 and 50,000 events. Progress goes to stderr, the table to
stdout; exit status 1 when a measurement failed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import httpx
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    parse_with_stores,
    percentile,
    progress,
    run_benchmark,
)
from benchserver import USER_KEY, Server

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import open_runtime  # noqa: E402

BATCH = 500
REPEATS = 20
TARGETS = {"resume_cold": 0.050, "resume_warm": 0.020, "at_sequence": 0.100}
SETUP = Setup(
    title="runledger resume and time-travel benchmark",
    packages=("eventsourcing", "uvicorn", "sse-starlette", "psycopg"),
    pg_shown=("shared_buffers",),
    code=True,
    legend="value = the measured request, in ms (cold: the first on a freshly started "
    f"server; warm: median / p95 of {REPEATS}); baseline = GET /api/runs/{{id}} of the same "
    "run, one indexed read of its live view (median); targets (PostgreSQL): resume < 50 ms "
    "cold, < 20 ms warm at 100,000 events; at_sequence < 100 ms at any N of 1,000,000",
)


def fill(url: str, data_dir: Path, sizes: list[int]) -> dict[int, UUID]:
    """One run of each size (its events in all), by an in-process engine; their ids."""
    runtime = open_runtime(url, data_dir)
    try:
        engine, runs = runtime.engine, {}
        for size in sizes:
            started = time.monotonic()
            run_id = engine.submit_run("alice", f"a run of {size:,} events").run_id
            _, lease = engine.claim_run(run_id, "runner-1")
            version = 2
            while version < size:
                batch = [
                    ("log", {"line": f"line {version + i}: compiling module {i % 97}"})
                    for i in range(min(BATCH, size - version))
                ]
                version = engine.record_output(
                    run_id, "runner-1", lease.fencing_token, batch
                ).sequence
            runs[size] = run_id
            progress(f"  {size:,} events in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        runtime.catch_up()  # the read models, so that the server starts at their head
        progress(f"  read models caught up in {time.monotonic() - started:.0f} s")
        return runs
    finally:
        runtime.close()


def first_frame(api: httpx.Client, run_id: UUID, after: int) -> float:
    """Seconds until the stream's first event frame (resuming after `after`)."""
    started = time.perf_counter()
    headers = {"Last-Event-ID": str(after), "Accept": "text/event-stream"}
    with api.stream("GET", f"/api/runs/{run_id}/stream", headers=headers) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if line.startswith("id:"):
                if int(line[3:].strip()) != after + 1:
                    raise AssertionError(f"resumed at {line!r}, expected id {after + 1}")
                return time.perf_counter() - started
    raise AssertionError("the stream ended before its first event")


def timed_get(api: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    api.get(path).raise_for_status()
    return time.perf_counter() - started


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def warm(samples: list[float]) -> str:
    return f"{ms(statistics.median(samples))} / {ms(percentile(samples, 95))}"


def bench(sizes: list[int]) -> Callable[[str, str, Path, Report], None]:
    def run(store: str, url: str, workdir: Path, report: Report) -> None:
        progress(f"{store}: filling runs of {', '.join(f'{s:,}' for s in sizes)} events")
        runs = fill(url, workdir / "data", sizes)
        progress(f"{store}: starting the server (it catches its read models up first)")
        server = Server(url, workdir / "data", client_timeout=120)
        started = time.monotonic()
        server.start(timeout=600)
        progress(f"{store}: serving after {time.monotonic() - started:.0f} s")
        try:
            with server.client(USER_KEY) as api:
                for size, run_id in runs.items():
                    measure(store, api, server, size, run_id, report)
        finally:
            server.stop()

    return run


def measure(
    store: str, api: httpx.Client, server: Server, size: int, run_id: UUID, report: Report
) -> None:
    n = f"{size:,} events"
    view = f"/api/runs/{run_id}"
    resume_cold = first_frame(api, run_id, size - 10)
    cpu = server.cpu_seconds()
    resumed = [first_frame(api, run_id, size - 10) for _ in range(REPEATS)]
    resume_cpu = (server.cpu_seconds() - cpu) / REPEATS
    baseline = statistics.median([timed_get(api, view) for _ in range(REPEATS)])
    report.rows += [
        Row(
            store,
            "resume at end - 10: first frame, cold",
            n,
            ms(resume_cold),
            ms(baseline),
            f"{resume_cold / baseline:.1f}x",
            _verdict(store, size, resume_cold, "resume_cold"),
        ),
        Row(
            store,
            "resume at end - 10: first frame, warm",
            n,
            warm(resumed),
            ms(baseline),
            f"{statistics.median(resumed) / baseline:.1f}x",
            f"server CPU {1000 * resume_cpu:.2f} ms/request; "
            + _verdict(store, size, statistics.median(resumed), "resume_warm"),
        ),
    ]
    for at in (1, size // 2, size - 1):
        path = f"{view}?at_sequence={at}"
        cold = timed_get(api, path)
        cpu = server.cpu_seconds()
        again = [timed_get(api, path) for _ in range(REPEATS)]
        per = (server.cpu_seconds() - cpu) / REPEATS
        report.rows.append(
            Row(
                store,
                f"at_sequence={at:,}: cold, then warm",
                n,
                f"{ms(cold)}, {warm(again)}",
                ms(baseline),
                f"{cold / baseline:.1f}x",
                f"server CPU {1000 * per:.2f} ms/request; "
                + _verdict(store, size, max(cold, statistics.median(again)), "at_sequence"),
            )
        )
    progress(f"{store}: {n} measured")


def _verdict(store: str, size: int, seconds: float, target: str) -> str:
    limit = TARGETS[target]
    if store != "postgres" or (target != "at_sequence" and size < 100_000):
        return f"(target < {ms(limit)} ms on PostgreSQL)"
    return f"{'meets' if seconds < limit else 'MISSES'} the < {ms(limit)} ms target"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="runs of 1,000, 10,000, 50,000")
    parser.add_argument("--sizes", help="comma-separated run lengths (events)")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parse_with_stores(parser, argv)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [1_000, 10_000, 50_000] if args.quick else [1_000, 100_000, 1_000_000]
    if min(sizes) < 20:
        parser.error("runs of at least 20 events")
    fact = f"runs of {', '.join(f'{s:,}' for s in sizes)} events; {REPEATS} requests each"
    return run_benchmark(SETUP, args.stores, args.pg_url, fact, bench(sizes))


if __name__ == "__main__":
    sys.exit(main())
