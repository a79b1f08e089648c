"""Leases, heartbeats, expiry and retries, and racing claimers, against a real server."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.runs_helpers import types_of, wait_until
from tests.support import ALICE, OTHER_RUNNER, RUNNER, Server

FAST = {"RUNLEDGER_LEASE_SECONDS": "1", "RUNLEDGER_RETRY_BACKOFF": "0.2"}


@pytest.fixture
def fast(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server whose leases last one second and whose retries back off 0.2 s."""
    srv = Server(store_url, tmp_path / "data", **FAST).start()
    try:
        yield srv
    finally:
        srv.kill()


def claim(runner: httpx.Client, wait: float = 5) -> dict:
    answer = runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": wait})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_silent_runner_loses_its_lease_and_the_run_is_retried(fast: Server) -> None:
    with fast.client(ALICE) as alice, fast.client(RUNNER) as runner:
        run_id = alice.post("/api/runs", json={"task": "t", "max_attempts": 2}).json()["run_id"]
        first = claim(runner)
        assert first["fencing_token"] == 1
        wait_until(lambda: "run.retry_scheduled" in types_of(alice, run_id))
        assert types_of(alice, run_id)[-2:] == ["lease.expired", "run.retry_scheduled"]

        second = claim(runner)  # after the backoff
        assert second["run"]["run_id"] == run_id and second["run"]["attempt"] == 2
        assert second["fencing_token"] == 2
        before = types_of(alice, run_id)
        zombie = runner.post(
            f"/api/runs/{run_id}/report", json={"fencing_token": 1, "outcome": "no_changes"}
        )
        assert zombie.status_code == 409 and zombie.json()["error"] == "stale_lease"
        late = runner.post(
            f"/api/runs/{run_id}/events",
            json={"fencing_token": 1, "events": [{"type": "log", "data": {}}]},
        )
        assert late.status_code == 409 and late.json()["error"] == "stale_lease"
        assert types_of(alice, run_id) == before

        done = runner.post(
            f"/api/runs/{run_id}/report", json={"fencing_token": 2, "outcome": "no_changes"}
        )
        assert done.status_code == 200 and done.json()["status"] == "completed"


def test_a_lease_expiring_on_the_last_attempt_fails_the_run_into_the_dead_letter_view(
    fast: Server,
) -> None:
    with fast.client(ALICE) as alice, fast.client(RUNNER) as runner:
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        claim(runner)
        wait_until(lambda: "run.failed" in types_of(alice, run_id))

        def dead_letter() -> list[dict]:
            failed = alice.get("/api/runs", params={"status": "failed"}).json()["items"]
            return [r for r in failed if r["run_id"] == run_id]

        run = wait_until(dead_letter)[0]
        assert run["failure"]["category"] == "runner-transient"
        assert run["attempt"] == run["max_attempts"] == 1


def test_heartbeats_keep_a_lease_alive_until_the_report(fast: Server) -> None:
    with fast.client(ALICE) as alice, fast.client(RUNNER) as runner:
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        lease = claim(runner)
        expiry = lease["lease_expires_at"]
        for _ in range(10):
            beat = runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")
            assert beat.status_code == 200, beat.text
            assert beat.json()["lease_expires_at"] > expiry
            expiry = beat.json()["lease_expires_at"]
            time.sleep(0.3)
        assert "lease.expired" not in types_of(alice, run_id)
        runner.post(
            f"/api/runs/{run_id}/report", json={"fencing_token": 1, "outcome": "no_changes"}
        )
        after = runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")
        assert after.status_code == 409 and after.json()["error"] == "stale_lease"
        assert runner.post("/api/runner/leases/not-a-uuid/heartbeat").status_code == 400


def test_transient_failures_are_retried_and_others_are_final(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        flaky = alice.post("/api/runs", json={"task": "t", "max_attempts": 3}).json()["run_id"]
        claim(runner)
        answer = runner.post(
            f"/api/runs/{flaky}/report",
            json={
                "fencing_token": 1,
                "outcome": "failed",
                "failure": {"category": "network", "message": "timeout"},
            },
        )
        assert answer.json()["status"] == "pending"
        run = alice.get(f"/api/runs/{flaky}", params={"min_position": answer.json()["position"]})
        assert run.json()["attempt"] == 2 and run.json()["failure"]["category"] == "network"
        assert run.json()["not_before"] is not None

        broken = alice.post("/api/runs", json={"task": "t", "max_attempts": 3}).json()["run_id"]
        token = None
        while token is None:  # the flaky run may come back first once its backoff ends
            lease = claim(runner)
            if lease["run"]["run_id"] == broken:
                token = lease["fencing_token"]
        answer = runner.post(
            f"/api/runs/{broken}/report",
            json={
                "fencing_token": token,
                "outcome": "failed",
                "failure": {"category": "agent", "message": "gave up"},
            },
        )
        assert answer.json()["status"] == "failed"


def test_twenty_racing_claimers_take_ten_runs_exactly_once(server: Server) -> None:
    with server.client(ALICE) as alice:
        runs = {alice.post("/api/runs", json={"task": f"t{i}"}).json()["run_id"] for i in range(10)}
        last = alice.post("/api/runs", json={"task": "probe"}).json()
        alice.post(f"/api/runs/{last['run_id']}/cancel")
    claimed: list[str] = []
    statuses: list[int] = []
    lock = threading.Lock()
    gate = threading.Barrier(20)

    def claimer() -> None:
        with server.client(RUNNER) as runner:
            gate.wait()
            answer = runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": 1})
            with lock:
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    claimed.append(answer.json()["run"]["run_id"])

    threads = [threading.Thread(target=claimer) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert Counter(statuses) == {200: 10, 204: 10}
    assert sorted(claimed) == sorted(runs)


def test_a_waiting_claim_wakes_when_a_run_is_submitted(server: Server) -> None:
    result: dict = {}

    def wait_for_work() -> None:
        with server.client(RUNNER) as runner:
            started = time.monotonic()
            answer = runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": 20})
            result.update(
                status=answer.status_code,
                elapsed=time.monotonic() - started,
                body=answer.json() if answer.status_code == 200 else None,
            )

    waiter = threading.Thread(target=wait_for_work)
    waiter.start()
    time.sleep(0.5)
    with server.client(ALICE) as alice:
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
    waiter.join(30)
    assert result["status"] == 200 and result["body"]["run"]["run_id"] == run_id
    assert result["elapsed"] < 10  # woken by the submission, not by the end of the wait


def test_a_lease_that_lapsed_while_the_server_was_down_is_expired_once(
    store_url: str, tmp_path: Path
) -> None:
    srv = Server(store_url, tmp_path / "data", **FAST).start()
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run_id = alice.post("/api/runs", json={"task": "t", "max_attempts": 3}).json()["run_id"]
        claim(runner)
    srv.kill()
    time.sleep(1.5)  # the lease lapses while no server is running
    for _ in range(3):  # restart, let the policy act, crash again
        srv = Server(store_url, tmp_path / "data", **FAST).start()
        with srv.client(ALICE) as alice:
            wait_until(lambda: "run.retry_scheduled" in types_of(alice, run_id))
        srv.kill()
    srv = Server(store_url, tmp_path / "data", **FAST).start()
    try:
        with srv.client(ALICE) as alice:
            time.sleep(1.0)
            kinds = Counter(types_of(alice, run_id))
            assert kinds["lease.expired"] == 1 and kinds["run.retry_scheduled"] == 1
    finally:
        srv.kill()


def test_only_the_runner_holding_the_lease_may_speak_for_the_run(server: Server) -> None:
    with (
        server.client(ALICE) as alice,
        server.client(RUNNER) as runner,
        server.client(OTHER_RUNNER) as intruder,
    ):
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        lease = claim(runner)
        before = types_of(alice, run_id)
        for attempt in (
            intruder.post(
                f"/api/runs/{run_id}/events",
                json={"fencing_token": 1, "events": [{"type": "log", "data": {}}]},
            ),
            intruder.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat"),
            intruder.post(
                f"/api/runs/{run_id}/report", json={"fencing_token": 1, "outcome": "no_changes"}
            ),
        ):
            assert attempt.status_code == 409 and attempt.json()["error"] == "stale_lease"
        assert types_of(alice, run_id) == before
        done = runner.post(
            f"/api/runs/{run_id}/report", json={"fencing_token": 1, "outcome": "no_changes"}
        )
        assert done.status_code == 200
        claimed = alice.get(f"/api/runs/{run_id}/events").json()["events"][1]
        assert claimed["data"]["runner"] == "runner-1" and claimed["data"]["runner_id"] == "r"
