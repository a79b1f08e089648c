#!/usr/bin/env python3
"""Server memory under many SSE streams that replay history, on SQLite and PostgreSQL.

For each store it starts `runledger serve`, writes one open run with `--events` events of
history, then (in a separate client process, `tests/streamclient.py`: raw asyncio sockets, a
few KB per stream) opens `--streams` concurrent `GET /api/runs/{id}/stream`, spread over
`--keys` keys of one user so the per-key limit (100 by default) allows them all. Each stream
replays the whole history and stays open. From /proc/<pid>/status (VmRSS) it prints:

- idle: the server's RSS before any stream;
- peak: the highest RSS above idle while the streams connect, replay and stay open (sampled
  every 50 ms);
- after close: RSS above idle once every stream closed and RSS held still for 3 s (≤ 20 s).

With `--baseline-root DIR` (a checkout of the code before the change, e.g.
`git archive 31b83c4 | tar -x -C /tmp/base`) the same measurement runs against a server
started from DIR, in the same run, and is printed beside it.

    .venv/bin/python scripts/bench_stream_memory.py --baseline-root /tmp/base
    .venv/bin/python scripts/bench_stream_memory.py --streams 200 --stores sqlite  # quick

The targets (asserted, exit status 1 when missed, for the code under test only): peak < 300
MB above idle, after close within 50 MB of idle. Progress on stderr, the report on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from benchreport import DEFAULT_PG_URL, postgres_schema, progress

from tests.serve import ROOT, ServeProcess
from tests.streamclient import StreamHolder, rss_mb, settled_rss

RUNNER_KEY = "kr"
PEAK_TARGET_MB, CLOSE_TARGET_MB = 300, 50


@dataclass
class Figures:
    """One measurement: MB of RSS."""

    idle: float
    peak: float  # above idle
    open: float  # above idle, every stream replayed and still open
    closed: float  # above idle, after close


def user_keys(n: int) -> list[str]:
    """The keys of the one user every stream speaks as."""
    return [f"ku{i}" for i in range(n)]


def start_server(url: str, data_dir: Path, keys: list[str], root: Path) -> ServeProcess:
    """`runledger serve` from `root` with the user keys and a runner key."""
    entries = [f"{k}=alice:user" for k in keys] + [f"{RUNNER_KEY}=runner-1:runner"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLEDGER_")}
    env.update(
        RUNLEDGER_API_KEYS=",".join(entries),
        RUNLEDGER_DATA_DIR=str(data_dir),
        RUNLEDGER_LEASE_SECONDS="3600",
    )
    server = ServeProcess(url, env, root=root)
    server.launch(60)
    return server


def write_history(base: str, key: str, events: int) -> tuple[str, int]:
    """One claimed (open) run with `events` events in all; its id and last sequence."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as user:
        run_id = user.post("/api/runs", json={"task": "memory"}).json()["run_id"]
    headers = {"Authorization": f"Bearer {RUNNER_KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as runner:
        lease = runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": 10})
        token = lease.json()["fencing_token"]
        text = "x" * 400  # about the size of one line of agent output
        left = events - 2  # submitted and claimed are the first two
        while left > 0:
            batch = [{"type": "tool.output", "data": {"text": text}}] * min(left, 250)
            answer = runner.post(
                f"/api/runs/{run_id}/events", json={"fencing_token": token, "events": batch}
            )
            answer.raise_for_status()
            left -= len(batch)
        last = answer.json()["sequence"]
    return run_id, int(last)


def measure(url: str, root: Path, args: argparse.Namespace, tmp: Path) -> Figures:
    """Idle, peak and after-close RSS of one server under `args.streams` streams."""
    keys = user_keys(args.keys)
    server = start_server(url, tmp, keys, root)
    assert server.proc is not None
    pid = server.proc.pid
    holder = None
    try:
        run_id, last = write_history(server.url, keys[0], args.events)
        idle = settled_rss(pid)  # the projections and the first reads settle
        peak = [idle]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], rss_mb(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        holder = StreamHolder(server.port, f"/api/runs/{run_id}/stream", keys, args.streams, last)
        result = holder.wait_replayed(timeout=600)
        took = time.monotonic() - started
        if result.replayed != args.streams:
            raise RuntimeError(f"only {result.replayed} streams replayed: {result.statuses}")
        time.sleep(1)
        opened = rss_mb(pid)
        stop.set()
        sampler.join()
        progress(f"  {args.streams} streams replayed {last} events in {took:.1f} s")
        holder.close()
        holder = None
        closed = settled_rss(pid)
        return Figures(idle, max(peak[0], opened) - idle, opened - idle, closed - idle)
    finally:
        if holder is not None:
            holder.kill()
        server.stop()


def run_store(store: str, args: argparse.Namespace) -> dict[str, Figures]:
    """The figures of this code (and of the baseline) on one store."""
    roots = {"this code": ROOT}
    if args.baseline_root:
        roots["baseline"] = Path(args.baseline_root).resolve()
    out: dict[str, Figures] = {}
    for label, root in roots.items():
        progress(f"{store}: {label} ({root})")
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streammem-")))
            if store == "sqlite":
                url = f"sqlite:///{tmp / 'events.db'}"
            else:
                url = stack.enter_context(postgres_schema(args.pg_url))
            out[label] = measure(url, root, args, tmp / "data")
    return out


def main() -> int:
    """Measure, print, and say whether the targets were met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--baseline-root", help="a checkout of the code before the change")
    args = parser.parse_args()
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    shape = f"{args.streams} streams x {args.events} events, {args.keys} keys"
    print(f"{shape}, nproc {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print(f"{'store':9} {'code':10} {'idle MB':>8} {'peak +MB':>9} {'open +MB':>9} ", end="")
    print(f"{'closed +MB':>10}")
    failed = False
    for store in args.stores.split(","):
        for label, f in run_store(store, args).items():
            print(
                f"{store:9} {label:10} {f.idle:8.1f} {f.peak:9.1f} {f.open:9.1f} {f.closed:10.1f}",
                flush=True,
            )
            if label == "this code" and (f.peak >= PEAK_TARGET_MB or f.closed > CLOSE_TARGET_MB):
                failed = True
    print(f"targets (this code): peak < {PEAK_TARGET_MB} MB, closed <= {CLOSE_TARGET_MB} MB")
    print("MISSED" if failed else "met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
