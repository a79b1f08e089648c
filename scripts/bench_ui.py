#!/usr/bin/env python3
"""Benchmark the dashboard in headless Chromium against the API it is built on.

For each store, in one run, on one server:
1. a run of N events (50,000 runner `log` events, posted in batches of 500), then
   - the dashboard's run view (a fresh page load of `#/runs/<id>`, signed in): the time
     until its timeline shows the first event, and until it shows the last one;
   - beside it, the baseline: `GET /api/runs/{id}/events` of the same run, page after page
     (1,000 events each), until the last event: the time to the first page and to the last;
   - and, once loaded, the time for the timeline to show the middle of the run after a
     jump there (its windowed list: the page holds only the rows in view);
2. a list of R runs (1,000): the runs view until it lists all of them, beside
   `GET /api/runs` of the same pages (500 each).

    .venv/bin/python scripts/bench_ui.py [--quick] [--events 50000] [--runs 1000]
        [--stores sqlite,postgres]

Needs Chromium at /usr/bin/chromium (Debian's package) and Playwright's Python client.
Progress goes to stderr, the table to stdout; exit status 1 when a measurement failed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from benchload import BenchError
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    parse_with_stores,
    progress,
    run_benchmark,
)
from benchserver import RUNNER_KEY, USER_KEY, Server

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.clients import CHROMIUM, launch_chromium  # noqa: E402

BATCH = 500
REPEATS = 3
SETUP = Setup(
    title="runledger dashboard benchmark (headless Chromium)",
    packages=("playwright", "starlette", "uvicorn"),
    pg_shown=("synchronous_commit",),
    legend="value = the dashboard in headless Chromium (fresh page load, signed in), "
    "baseline = the same data over the API it reads, fetched by an HTTP client in this "
    f"process; median of {REPEATS} loads each (milliseconds)",
)


def fill_run(api: httpx.Client, events: int) -> tuple[str, int]:
    """A run with `events` log events after its first two; (its id, its last sequence)."""
    run = api.post("/api/runs", json={"task": "a long run"}).json()["run_id"]
    runner = {"Authorization": f"Bearer {RUNNER_KEY}"}
    lease = api.post(
        "/api/runner/claim", json={"runner_id": "bench", "wait_seconds": 10}, headers=runner
    ).json()
    last = 2
    for start in range(0, events, BATCH):
        batch = [
            {"type": "log", "data": {"line": f"line {i}: compiling module {i % 97}"}}
            for i in range(start, min(events, start + BATCH))
        ]
        answer = api.post(
            f"/api/runs/{run}/events",
            json={"fencing_token": lease["fencing_token"], "events": batch},
            headers=runner,
        )
        answer.raise_for_status()
        last = answer.json()["sequence"]
    return run, int(last)


def api_events(api: httpx.Client, run: str, last: int) -> tuple[float, float]:
    """(seconds to the first page, seconds to the last event) over GET …/events."""
    started = time.perf_counter()
    first, after = 0.0, 0
    while after < last:
        page = api.get(f"/api/runs/{run}/events", params={"after": after, "limit": 1000}).json()
        first = first or time.perf_counter() - started
        after = page["events"][-1]["sequence"]
    return first, time.perf_counter() - started


def page_events(page: Any, url: str, run: str, last: int) -> tuple[float, float, float]:
    """(to the first event shown, to the last event shown, to the middle after a jump)."""
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(f"{url}/#/runs/{run}")
    # The timeline draws the rows in view as events arrive (following the newest): its
    # first rows drawn are the first events shown.
    page.wait_for_selector("#timeline [data-seq]", timeout=120_000)
    first = time.perf_counter() - started
    page.wait_for_selector(f"#timeline [data-seq='{last}']", timeout=300_000)
    shown = time.perf_counter() - started
    middle = last // 2
    jumped = time.perf_counter()
    page.evaluate(
        "n => { const t = document.getElementById('timeline'); t.scrollTop = (n - 1) * 28 }",
        middle,
    )
    page.wait_for_selector(f"#timeline [data-seq='{middle}']", timeout=60_000)
    return first, shown, time.perf_counter() - jumped


def fill_runs(api: httpx.Client, runs: int) -> None:
    for i in range(runs):
        api.post("/api/runs", json={"task": f"run {i}"}).raise_for_status()


def api_runs(api: httpx.Client, head: int) -> float:
    started = time.perf_counter()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, "min_position": head}
        if cursor:
            params["cursor"] = cursor
        answer = api.get("/api/runs", params=params).json()
        cursor = answer["next_cursor"]
        if not cursor:
            return time.perf_counter() - started


def page_runs(page: Any, url: str, total: int) -> float:
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(f"{url}/#/runs")
    page.wait_for_function(
        "n => document.querySelector('.runs-list')?.dataset.count === String(n)",
        arg=total,
        timeout=120_000,
    )
    return time.perf_counter() - started


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.0f}"


def bench(plan: dict[str, int]) -> Any:
    def run(store: str, url: str, workdir: Path, report: Report) -> None:
        from playwright.sync_api import sync_playwright

        if not Path(CHROMIUM).exists():  # (the tests' helper would skip, as a test does)
            raise BenchError(f"Chromium is missing: {CHROMIUM} (Debian's package `chromium`)")
        server = Server(url, workdir / "data")
        server.start_for(store)
        try:
            headers = {"Authorization": f"Bearer {USER_KEY}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=120) as api:
                progress(f"{store}: a run of {plan['events']:,} events")
                run_id, last = fill_run(api, plan["events"])
                progress(f"{store}: {plan['runs']:,} runs")
                fill_runs(api, plan["runs"] - 1)
                head = api.get("/api/diagnostics").json()["head_position"]
                baseline = [api_events(api, run_id, last) for _ in range(REPEATS)]
                list_baseline = [api_runs(api, head) for _ in range(REPEATS)]
                total = plan["runs"] + 0
                with sync_playwright() as p:
                    browser = launch_chromium(p)
                    try:
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                        signed = context.request.post(
                            f"{server.url}/api/session", data={"key": USER_KEY}
                        )
                        assert signed.status == 204, signed.text()
                        page = context.new_page()
                        progress(f"{store}: the run view, {REPEATS} loads")
                        shown = [
                            page_events(page, server.url, run_id, last) for _ in range(REPEATS)
                        ]
                        progress(f"{store}: the runs view, {REPEATS} loads")
                        listed = [page_runs(page, server.url, total) for _ in range(REPEATS)]
                    finally:
                        browser.close()
            n = f"{last:,} events"
            report.rows += [
                Row(
                    store,
                    "run view: first events shown",
                    n,
                    ms([s[0] for s in shown]),
                    ms([b[0] for b in baseline]),
                    _ratio(shown, baseline, 0),
                    "baseline: the first page of GET …/events",
                ),
                Row(
                    store,
                    "run view: last event shown",
                    n,
                    ms([s[1] for s in shown]),
                    ms([b[1] for b in baseline]),
                    _ratio(shown, baseline, 1),
                    "baseline: every page of GET …/events (1,000 each)",
                ),
                Row(
                    store,
                    "run view: jump to the middle",
                    n,
                    ms([s[2] for s in shown]),
                    notes="scroll to the middle until its row is drawn",
                ),
                Row(
                    store,
                    "runs view: all listed",
                    f"{total:,} runs",
                    ms(listed),
                    ms(list_baseline),
                    f"{statistics.median(listed) / statistics.median(list_baseline):.1f}x",
                    "baseline: GET /api/runs pages (500 each)",
                ),
            ]
        finally:
            server.stop()

    return run


def _ratio(shown: list[tuple[float, ...]], baseline: list[tuple[float, ...]], i: int) -> str:
    return (
        f"{statistics.median(s[i] for s in shown) / statistics.median(b[i] for b in baseline):.1f}x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 events and 200 runs")
    parser.add_argument("--events", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parse_with_stores(parser, argv)
    plan = {
        "events": args.events or (5_000 if args.quick else 50_000),
        "runs": args.runs or (200 if args.quick else 1_000),
    }
    fact = f"{plan['events']:,} events in one run, {plan['runs']:,} runs; {REPEATS} loads"
    return run_benchmark(SETUP, args.stores, args.pg_url, fact, bench(plan))


if __name__ == "__main__":
    sys.exit(main())
