#!/usr/bin/env python3
"""Benchmark several `runledger serve` processes on one PostgreSQL schema under a submit load.

For each set of processes (default: 1 `all` process, the baseline; 2 and 3 `all`; `api` +
`worker`; `api` + 2 `worker`), each on a fresh schema, in one run: a paced submit load spread
over the API processes, with read-your-writes reads on the next process; the read-model lag
(`/api/diagnostics`) sampled every 0.1 s; the catch-up after the load; a takeover (the
leader SIGKILLed under load, when two can lead); `DeadlockDetected` and `resyncing` lines
in the servers' output; and every read-model row compared with a rebuild from the log.
scripts/README.md says how each column is measured.

    .venv/bin/python scripts/bench_processes.py [--duration 40] [--rate 226] [--sets all,all]

Progress goes to stderr, the report to stdout. Exit status 1 when a check failed (lag,
catch-up, takeover over their limits, a deadlock, a resync, a 503, a difference from the
rebuild), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import orjson
from benchload import STOP, BenchError
from benchreport import DEFAULT_PG_URL, handle_signals, postgres_schema, progress
from benchserver import RUNNER_KEY, USER_KEY, Server

DEFAULT_SETS = ["all", "all,all", "all,all,all", "api,worker", "api,worker,worker"]
LIMITS = {"lag": 2000, "catch_up": 10.0, "takeover": 5.0, "wake": 0.2}
THREADS = 16
READ_EVERY = 10


class Conn:
    """One keep-alive HTTP connection with the user's key (reconnects after an error)."""

    def __init__(self, server: Server, key: str = USER_KEY) -> None:
        self.server = server
        self._conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """One request; (status, JSON body or None), (0, None) when the connection failed."""
        try:
            self._conn.request(method, path, body=body, headers=self._headers)
            answer = self._conn.getresponse()
            raw = answer.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()
            return 0, None
        try:
            return answer.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return answer.status, None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


@dataclass
class Load:
    """What a load phase did."""

    accepted: int = 0
    failed: int = 0
    reads_ok: int = 0
    reads_bad: int = 0
    seconds: float = 0.0
    max_lag: int = 0
    latencies: list[float] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


def run_load(targets: list[Server], rate: float, duration: float, load: Load) -> None:
    """Paced submits over `targets` for `duration` s, sampling the lag of every target."""
    guard = threading.Lock()
    start = time.perf_counter()

    def thread(i: int) -> None:
        submit_to, read_from = (
            Conn(targets[i % len(targets)]),
            Conn(targets[(i + 1) % len(targets)]),
        )
        k = 0
        try:
            while not STOP.is_set():
                due = start + (k * THREADS + i) / rate
                if due - start >= duration:
                    return
                time.sleep(max(0.0, due - time.perf_counter()))
                sent = time.perf_counter()
                status, body = submit_to.request("POST", "/api/runs", b'{"task": "load"}')
                k += 1
                with guard:
                    load.latencies.append(time.perf_counter() - sent)
                    load.accepted += status == 202
                    load.failed += status != 202
                if status != 202 or k % READ_EVERY:
                    continue
                path = f"/api/runs/{body['run_id']}?min_position={body['position']}"
                status, _ = read_from.request("GET", path)
                with guard:
                    load.reads_ok += status == 200
                    load.reads_bad += status != 200
                    if status != 200 and len(load.bad) < 5:
                        load.bad.append(f"read {status}")
        finally:
            submit_to.close()
            read_from.close()

    threads = [threading.Thread(target=thread, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    load.seconds = time.perf_counter() - start


def read_model_lag(diagnostics: dict[str, Any]) -> int:
    """The log's head minus the position every read model has reached, as one process sees."""
    return int(diagnostics["read_models"]["runs"]["lag"])


def sample_lag(servers: list[Server], stop: threading.Event, load: Load) -> None:
    """Every 0.1 s, the highest read-model lag any live server reports."""
    conns = [Conn(s) for s in servers]
    while not stop.wait(0.1):
        for conn in conns:
            if conn.server.proc is not None and conn.server.proc.poll() is None:
                status, body = conn.request("GET", "/api/diagnostics")
                if status == 200:
                    load.max_lag = max(load.max_lag, read_model_lag(body))
    for conn in conns:
        conn.close()


def loaded(servers: list[Server], targets: list[Server], rate: float, seconds: float) -> Load:
    """A load phase with the lag sampled throughout."""
    load, stop = Load(), threading.Event()
    sampler = threading.Thread(target=sample_lag, args=(servers, stop, load), daemon=True)
    sampler.start()
    try:
        run_load(targets, rate, seconds, load)
    finally:
        stop.set()
        sampler.join(10)
    return load


def catch_up_seconds(servers: list[Server], timeout: float = 300.0) -> float:
    """Seconds until every live server reports read-model lag 0."""
    start = time.perf_counter()
    conns = [Conn(s) for s in servers if s.proc is not None and s.proc.poll() is None]
    try:
        while time.perf_counter() - start < timeout and not STOP.is_set():
            lags = [conn.request("GET", "/api/diagnostics")[1] for conn in conns]
            if all(body is not None and read_model_lag(body) <= 0 for body in lags):
                return time.perf_counter() - start
            time.sleep(0.02)
        return float("inf")
    finally:
        for conn in conns:
            conn.close()


def leader_of(servers: list[Server]) -> Server | None:
    """The live server whose diagnostics say it leads."""
    for srv in servers:
        if srv.proc is not None and srv.proc.poll() is None:
            conn = Conn(srv)
            status, body = conn.request("GET", "/api/diagnostics")
            conn.close()
            if status == 200 and body["worker"]["leader"]:
                return srv
    return None


def takeover(servers: list[Server], rate: float, seconds: float) -> tuple[float, Load, float]:
    """Kill the leader halfway through a load on the others: (takeover s, load, catch-up s)."""
    leader = leader_of(servers)
    if leader is None:
        raise BenchError("no process leads")
    others = [s for s in servers if s is not leader]
    targets = [s for s in others if s.env.get("RUNLEDGER_ROLE") != "worker"]
    found: list[float] = []

    def kill_halfway() -> None:
        time.sleep(seconds / 2)
        leader.kill()
        killed = time.perf_counter()
        while leader_of(others) is None and time.perf_counter() - killed < 60:
            time.sleep(0.05)
        found.append(time.perf_counter() - killed)

    killer = threading.Thread(target=kill_halfway, daemon=True)
    killer.start()
    load = loaded(others, targets, rate, seconds)
    killer.join(90)
    return found[0] if found else float("inf"), load, catch_up_seconds(others)


def claim_wakes(claim_at: Server, submit_at: Server, repeats: int = 20) -> list[float]:
    """A claim waits in `claim_at` (which does not project); a run is submitted through
    `submit_at`: seconds from the submit's answer to the claim's, per repetition."""
    runner, user = Conn(claim_at, RUNNER_KEY), Conn(submit_at)
    found: list[float] = []

    def wait(answered: list[float]) -> None:
        body = b'{"runner_id": "bench", "wait_seconds": 10}'
        status, _ = runner.request("POST", "/api/runner/claim", body)
        answered.append(time.perf_counter() if status == 200 else float("inf"))

    try:
        for _ in range(repeats):
            answered: list[float] = []
            waiting = threading.Thread(target=wait, args=(answered,), daemon=True)
            waiting.start()
            time.sleep(0.2)  # the claim is parked
            status, _ = user.request("POST", "/api/runs", b'{"task": "wake a runner"}')
            acked = time.perf_counter()
            waiting.join(15)
            if status != 202 or not answered:
                raise BenchError(f"claim wake: submit {status}, claim {answered}")
            found.append(answered[0] - acked)
    finally:
        runner.close()
        user.close()
    return found


def read_models(url: str, data_dir: Path) -> list[list[tuple[Any, ...]]]:
    """Every row of every read model, table by table."""
    from adapters import readmodels
    from api.config import Config
    from api.service.runtime import Runtime

    runtime = Runtime(Config(database_url=url, data_dir=data_dir))
    try:
        with runtime.db.reading() as cur:
            return [
                cur.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in readmodels.READ_MODEL_TABLES
            ]
    finally:
        runtime.close()


def rebuild(url: str, data_dir: Path) -> None:
    """`runledger projections rebuild`, in this process."""
    from api.config import Config
    from api.service.runtime import Runtime

    runtime = Runtime(Config(database_url=url, data_dir=data_dir))
    try:
        runtime.rebuild()
    finally:
        runtime.close()


def count_lines(servers: list[Server], needle: str) -> int:
    """Lines of the servers' output that contain `needle`."""
    return sum(needle in line for srv in servers for line in srv.output)


def measure(pg_url: str, roles: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """One set of processes on a fresh schema: every figure of the report."""
    with ExitStack() as stack:
        url = stack.enter_context(postgres_schema(pg_url))
        base = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        servers = []
        for i, role in enumerate(roles):
            srv = Server(url, base / f"data-{i}")
            srv.env["RUNLEDGER_ROLE"] = role
            stack.callback(srv.kill)
            srv.start()
            servers.append(srv)
        api = [s for s in servers if s.env["RUNLEDGER_ROLE"] != "worker"]
        leader = leader_of(servers)
        followers = [s for s in api if s is not leader]
        wakes = None
        if followers:  # before the load: the queue must be empty for the claims to wait
            progress(f"{'+'.join(roles)}: claims waiting in a process that does not project")
            wakes = claim_wakes(followers[0], next((s for s in api if s is leader), api[0]))
        progress(f"{'+'.join(roles)}: {args.rate}/s for {args.duration} s")
        load = loaded(servers, api, args.rate, args.duration)
        result: dict[str, Any] = {"load": load, "catch_up": catch_up_seconds(servers)}
        result["wakes"] = wakes
        accepted = load.accepted + len(wakes or [])
        if sum(r != "api" for r in roles) >= 2:
            progress(f"{'+'.join(roles)}: killing the leader under load")
            result["takeover"], kill_load, result["kill_catch_up"] = takeover(
                servers, args.rate, args.kill_load
            )
            accepted += kill_load.accepted
            load.reads_bad += kill_load.reads_bad
        for srv in servers:
            srv.stop()
        result["deadlocks"] = count_lines(servers, "DeadlockDetected")
        result["resyncs"] = count_lines(servers, "resyncing")
        live = read_models(url, base / "check")
        progress(f"{'+'.join(roles)}: rebuilding the read models to compare")
        rebuild(url, base / "check")
        result["rebuild_equal"] = read_models(url, base / "check") == live
        result["runs_rows_ok"] = len(live[0]) == accepted
        return result


def p99(values: list[float]) -> float:
    """The 99th percentile, in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def line(label: str, r: dict[str, Any]) -> tuple[str, bool]:
    """One report line, and whether every check held."""
    load: Load = r["load"]
    take = r.get("takeover")
    ok = (
        load.max_lag < LIMITS["lag"]
        and r["catch_up"] < LIMITS["catch_up"]
        and r["deadlocks"] == 0
        and r["resyncs"] == 0
        and load.reads_bad == 0
        and load.failed == 0
        and r["rebuild_equal"]
        and r["runs_rows_ok"]
        and (take is None or take < LIMITS["takeover"])
    )
    wakes = r["wakes"]
    ok = ok and (wakes is None or median(wakes) < LIMITS["wake"])
    wake_text = "-" if wakes is None else f"{1000 * median(wakes):.0f}/{1000 * max(wakes):.0f} ms"
    take_text = "-" if take is None else f"{take:5.2f} s (catch-up {r['kill_catch_up']:.2f} s)"
    text = (
        f"{label:<18} {load.accepted / load.seconds:7.1f}/s {p99(load.latencies):7.0f} ms "
        f"{load.failed:4d} "
        f"{load.max_lag:8d} {r['catch_up']:8.2f} s {r['deadlocks']:5d} {r['resyncs']:6d} "
        f"{load.reads_ok:5d}/{load.reads_bad:<3d} {wake_text:>13} {take_text:<26} "
        f"{'equal' if r['rebuild_equal'] and r['runs_rows_ok'] else 'DIFFERENT':<9} "
        f"{'ok' if ok else 'FAIL'}"
    )
    return text, ok


def main() -> int:
    """Run every set of processes; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--rate", type=float, default=226.0)
    parser.add_argument("--kill-load", type=float, default=10.0)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--sets", nargs="*", default=DEFAULT_SETS, help="roles, e.g. api,worker")
    args = parser.parse_args()
    handle_signals(stop_workers=True)
    print(f"# {' '.join(sys.argv)}")
    print(
        f"# {args.rate}/s submits for {args.duration} s over the API processes; limits: lag "
        f"< {LIMITS['lag']}, catch-up < {LIMITS['catch_up']} s, takeover < "
        f"{LIMITS['takeover']} s, claim wake p50 < {1000 * LIMITS['wake']:.0f} ms (a claim "
        f"re-checks every 500 ms anyway), 0 deadlocks, 0 resyncs, 0 failed reads"
    )
    print(
        f"{'processes':<18} {'submits':>9} {'p99':>10} {'fail':>4} {'max lag':>8} "
        f"{'catch-up':>10} {'dlock':>5} {'resync':>6} {'reads ok/bad':>9} "
        f"{'wake p50/max':>13} {'takeover':<26} {'rebuild':<9} check"
    )
    print(f"# load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    all_ok = True
    try:
        for spec in args.sets:
            roles = spec.split(",")
            text, ok = line("+".join(roles), measure(args.pg_url, roles, args))
            print(text, flush=True)
            all_ok = all_ok and ok
        print(f"# load average at end: {os.getloadavg()[0]:.1f}")
    except KeyboardInterrupt:
        return 130
    except BenchError as exc:
        print(f"FAILED: {exc}")
        return 1
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
