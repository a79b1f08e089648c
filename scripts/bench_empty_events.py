"""GET /api/events for a user with no events, on a log full of another user's: before vs after.

    .venv/bin/python scripts/bench_empty_events.py --base /tmp/fuzzbase --stores sqlite,postgres

For each store and each code (the `--base` checkout, then this one): a fresh database,
`--events` runner events on bob's run, then `--requests` sequential `GET /api/events` by
alice (who has none); prints the answer time p50 / p99 and the `last_position` reached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench_idle_claims import ROOT, database, serve

LOG = {"type": "log", "data": {"line": "x"}}


def fill(client: httpx.Client, port: int, events: int) -> int:
    """Bob's run gets `events` runner events; the head position."""
    bob = {"Authorization": "Bearer kb"}
    runner = {"Authorization": "Bearer kr"}
    run_id = client.post("/api/runs", json={"task": "noisy"}, headers=bob).json()["run_id"]
    claim = client.post(
        "/api/runner/claim", json={"runner_id": "b", "wait_seconds": 10}, headers=runner
    ).json()
    position = 0
    for _ in range(events // 500):
        answer = client.post(
            f"/api/runs/{run_id}/events",
            json={"fencing_token": claim["fencing_token"], "events": [LOG] * 500},
            headers=runner,
        )
        answer.raise_for_status()
        position = answer.json()["position"]
    return int(position)


def measure(root: Path, store: str, events: int, requests: int) -> tuple[float, float, int, int]:
    """(p50 ms, p99 ms, last_position answered, head) for alice's empty log."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(store, Path(tmp)) as url,
        serve(root, url, Path(tmp) / "data", keys="ka=alice:user,kb=bob:user,kr=r:runner") as (
            _,
            port,
        ),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        head = fill(client, port, events)
        alice = {"Authorization": "Bearer ka"}
        client.get("/api/events", params={"min_position": head}, headers=alice)
        times, last = [], 0
        for _ in range(requests):
            started = time.perf_counter()
            answer = client.get("/api/events", headers=alice)
            times.append(1000 * (time.perf_counter() - started))
            last = answer.json()["last_position"]
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))], last, head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="checkout to compare against")
    parser.add_argument("--events", type=int, default=25_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--stores", default="sqlite")
    args = parser.parse_args()
    print(f"$ {' '.join(sys.argv)}")
    print(f"nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    print(f"{'store':8} {'code':8} {'p50 ms':>8} {'p99 ms':>8}  last_position / head")
    for store in args.stores.split(","):
        for label, root in (("before", args.base.resolve()), ("after", ROOT)):
            p50, p99, last, head = measure(root, store, args.events, args.requests)
            print(f"{store:8} {label:8} {p50:8.1f} {p99:8.1f}  {last} / {head}")
    print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
