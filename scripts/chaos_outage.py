#!/usr/bin/env python3
"""Chaos: a PostgreSQL outage under load, next to the same load with the database up.

It starts `runledger serve` on PostgreSQL through a TCP proxy (tests/faults.py), keeps one
client per endpoint busy (runs list/get, events, global log, diagnostics, submit, claim then
report, heartbeat, runner events), and measures three phases in one run: a baseline with
the database up, an outage (the proxy closes every connection and refuses new ones), and
the time after the database is back. It prints, per endpoint and phase, the answers'
statuses and latencies; how long /health took to say 503 and to say ok again; how long
writes took to resume; and the acknowledged runner events against the stored ones.

    .venv/bin/python scripts/chaos_outage.py [--outage 20] [--baseline 10] [--after 10]

The exit status is 1 when a request answered 500 (or failed to answer), took longer than
5 s during the outage, /health took 2 s or more to turn 503, writes took 10 s or more to
resume, or an acknowledged event is missing or stored twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.store import StoreSettings  # noqa: E402
from tests.faults import TcpProxy  # noqa: E402
from tests.serve import ServeProcess  # noqa: E402

PG_URL = os.environ.get("RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
USER, RUNNER = "ka", "kr"
KEYS = f"{USER}=alice:user,{RUNNER}=runner-1:runner"
ANSWER_WITHIN, HEALTH_WITHIN, RESUME_WITHIN = 5.0, 2.0, 10.0


@dataclass
class Tally:
    """Every answer, by endpoint and phase."""

    phase: str = "baseline"
    answers: dict[tuple[str, str], list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, endpoint: str, send: Callable[[], httpx.Response]) -> httpx.Response | None:
        """Send one request and record its status (0: no answer) and latency."""
        phase, started = self.phase, time.monotonic()
        try:
            response: httpx.Response | None = send()
        except httpx.HTTPError:
            response = None
        with self.lock:
            status = 0 if response is None else response.status_code
            self.answers[(endpoint, phase)].append((status, time.monotonic() - started))
        return response


class Load:
    """One thread per endpoint, each calling it in a loop until stopped."""

    def __init__(self, url: str, tally: Tally, world: dict[str, str | int]) -> None:
        self.url, self.tally, self.world = url, tally, world
        self.stop = threading.Event()
        self.acknowledged: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(step,), daemon=True)
            for step in (
                self._reads,
                self._diagnostics,
                self._submit,
                self._claim_and_report,
                self._heartbeat,
                self._runner_events,
            )
        ]

    def client(self, key: str) -> httpx.Client:
        """A client with one key and a long timeout (a hang shows as latency, not an error)."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )

    def _loop(self, step: Callable[[httpx.Client, httpx.Client, int], None]) -> None:
        with self.client(USER) as user, self.client(RUNNER) as runner:
            n = 0
            while not self.stop.is_set():
                n += 1
                step(user, runner, n)
                time.sleep(0.02)

    def _reads(self, user: httpx.Client, _: httpx.Client, n: int) -> None:
        run = self.world["write_run"]
        self.tally.call("GET /api/runs", lambda: user.get("/api/runs", params={"limit": 20}))
        self.tally.call("GET /api/runs/{id}", lambda: user.get(f"/api/runs/{run}"))
        self.tally.call(
            "GET /api/runs/{id}/events",
            lambda: user.get(f"/api/runs/{run}/events", params={"after": max(0, n - 5)}),
        )
        self.tally.call("GET /api/events", lambda: user.get("/api/events", params={"limit": 50}))

    def _diagnostics(self, user: httpx.Client, _: httpx.Client, n: int) -> None:
        self.tally.call("GET /api/diagnostics", lambda: user.get("/api/diagnostics"))

    def _submit(self, user: httpx.Client, _: httpx.Client, n: int) -> None:
        body = {"task": f"chaos {n}"}
        self.tally.call("POST /api/runs", lambda: user.post("/api/runs", json=body))
        time.sleep(0.2)  # enough runs to claim, not a flood

    def _claim_and_report(self, _: httpx.Client, runner: httpx.Client, n: int) -> None:
        claimed = self.tally.call(
            "POST /api/runner/claim",
            lambda: runner.post("/api/runner/claim", json={"runner_id": "claimer"}),
        )
        if claimed is None or claimed.status_code != 200:
            return
        lease = claimed.json()
        path = f"/api/runs/{lease['run']['run_id']}/report"
        body = {"fencing_token": lease["fencing_token"], "outcome": "no_changes"}
        for _ in range(100):  # a report that met the outage is retried, as a runner would
            answer = self.tally.call(
                "POST /api/runs/{id}/report", lambda: runner.post(path, json=body)
            )
            if answer is not None and answer.status_code != 503:
                return
            time.sleep(0.2)

    def _heartbeat(self, _: httpx.Client, runner: httpx.Client, n: int) -> None:
        path = f"/api/runner/leases/{self.world['beat_lease']}/heartbeat"
        self.tally.call("POST /api/runner/leases/{id}/heartbeat", lambda: runner.post(path))
        time.sleep(0.1)

    def _runner_events(self, _: httpx.Client, runner: httpx.Client, n: int) -> None:
        marker = f"m-{n}"
        body = {
            "fencing_token": self.world["write_token"],
            "events": [{"type": "log", "data": {"line": marker}}],
        }
        path = f"/api/runs/{self.world['write_run']}/events"
        answer = self.tally.call("POST /api/runs/{id}/events", lambda: runner.post(path, json=body))
        if answer is not None and answer.status_code == 200:
            self.acknowledged.append(marker)


def set_up(url: str) -> dict[str, str | int]:
    """Two claimed runs: one to write runner events to, one to keep alive with heartbeats."""
    world: dict[str, str | int] = {}
    headers = {"Authorization": f"Bearer {USER}"}
    with (
        httpx.Client(base_url=url, headers=headers, timeout=30) as user,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {RUNNER}"}, timeout=30
        ) as runner,
    ):
        for role in ("write", "beat"):
            user.post("/api/runs", json={"task": f"chaos {role}"}).raise_for_status()
            claim = runner.post("/api/runner/claim", json={"runner_id": role, "wait_seconds": 10})
            claim.raise_for_status()
            lease = claim.json()
            world[f"{role}_run"], world[f"{role}_token"] = (
                lease["run"]["run_id"],
                lease["fencing_token"],
            )
            world[f"{role}_lease"] = lease["lease_id"]
    return world


def health_status(client: httpx.Client) -> int:
    """GET /health's status (0 without an answer)."""
    try:
        return client.get("/health", timeout=10).status_code
    except httpx.HTTPError:
        return 0


def seconds_until(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until predicate() held (checked every 50 ms), or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def stored_markers(url: str, run_id: str) -> Counter[str]:
    """How often each runner-event marker is stored in the run's history."""
    found: Counter[str] = Counter()
    after = 0
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {USER}"}, timeout=30
    ) as user:
        while True:
            page = user.get(f"/api/runs/{run_id}/events", params={"after": after, "limit": 1000})
            events = page.json()["events"]
            found.update(e["data"].get("line") for e in events if e["type"] == "log")
            if len(events) < 1000:
                return found
            after = events[-1]["sequence"]


def summarise(tally: Tally) -> tuple[list[str], int]:
    """The per-endpoint table, and how many answers broke the rules."""
    lines = [f"{'endpoint':<40} {'phase':<9} {'n':>5} {'max s':>7} {'p50 s':>7}  statuses"]
    bad = 0
    for endpoint in sorted({e for e, _ in tally.answers}):
        for phase in ("baseline", "outage", "after"):
            answers = tally.answers.get((endpoint, phase), [])
            if not answers:
                continue
            latencies = sorted(s for _, s in answers)
            statuses = Counter(status for status, _ in answers)
            shown = " ".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
            lines.append(
                f"{endpoint:<40} {phase:<9} {len(answers):>5} {latencies[-1]:>7.3f} "
                f"{latencies[len(latencies) // 2]:>7.3f}  {shown}"
            )
            bad += sum(v for k, v in statuses.items() if k == 0 or (k >= 500 and k != 503))
            if phase == "outage":
                bad += sum(1 for s in latencies if s > ANSWER_WITHIN)
    return lines, bad


def run(args: argparse.Namespace, tmp: Path) -> int:
    """The three phases; the report on stdout; 1 when a rule was broken."""
    import psycopg

    target = StoreSettings.from_url(PG_URL)
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    proxy = TcpProxy(target.pg_host, target.pg_port)
    sep = "&" if "?" in PG_URL else "?"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLEDGER_")}
    env.update(RUNLEDGER_API_KEYS=KEYS, RUNLEDGER_DATA_DIR=str(tmp), RUNLEDGER_LEASE_SECONDS="3600")
    server = ServeProcess(proxy.proxied_url(f"{PG_URL}{sep}schema={schema}"), env)
    try:
        server.launch(60)
        world = set_up(server.url)
        tally = Tally()
        load = Load(server.url, tally, world)
        for thread in load.threads:
            thread.start()
        time.sleep(args.baseline)
        with httpx.Client(base_url=server.url) as anonymous:
            print(f"cutting the database off for {args.outage:g} s", file=sys.stderr)
            tally.phase = "outage"
            proxy.cut()
            cut_at = time.monotonic()
            to_503 = seconds_until(lambda: health_status(anonymous) == 503, args.outage)
            time.sleep(max(0.0, cut_at + args.outage - time.monotonic()))
            tally.phase = "after"
            acknowledged_before = len(load.acknowledged)
            proxy.restore()
            restored_at = time.monotonic()
            print("database restored", file=sys.stderr)
            to_ok = resumed = None
            while time.monotonic() - restored_at < 30 and (to_ok is None or resumed is None):
                if resumed is None and len(load.acknowledged) > acknowledged_before:
                    resumed = time.monotonic() - restored_at
                if to_ok is None and health_status(anonymous) == 200:
                    to_ok = time.monotonic() - restored_at
                time.sleep(0.05)
            time.sleep(args.after)
        load.stop.set()
        for thread in load.threads:
            thread.join(90)
        stored = stored_markers(server.url, str(world["write_run"]))
    finally:
        server.stop()
        proxy.close()
        with psycopg.connect(target.pg_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    lines, bad = summarise(tally)
    missing = [m for m in load.acknowledged if stored[m] == 0]
    doubled = [m for m, count in stored.items() if count > 1]
    print(
        f"# chaos_outage: a {args.outage:g} s PostgreSQL outage (proxy cut); "
        f"baseline {args.baseline:g} s, after {args.after:g} s"
    )
    print(*lines, sep="\n")
    print(f"/health turned 503 after      {_s(to_503)}   (limit {HEALTH_WITHIN:g} s)")
    print(f"/health ok again after restore {_s(to_ok)}")
    print(f"writes resumed after restore   {_s(resumed)}   (limit {RESUME_WITHIN:g} s)")
    print(
        f"runner events acknowledged {len(load.acknowledged)}, stored "
        f"{sum(stored.values())}, acknowledged but missing {len(missing)}, stored twice "
        f"{len(doubled)}"
    )
    print(
        f"answers breaking the rules (500, no answer, or over {ANSWER_WITHIN:g} s "
        f"in the outage): {bad}"
    )
    late = to_503 is None or to_503 >= HEALTH_WITHIN or resumed is None or resumed >= RESUME_WITHIN
    return 1 if bad or missing or doubled or late else 0


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:6.2f} s"


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=20.0, help="seconds without a database")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of load before")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after")
    args = parser.parse_args(argv)
    with TemporaryDirectory(prefix="chaos-outage-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
