"""Waiting claims: idle ones share one look at the runs view, and still miss no run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support import ALICE, RUNNER, Server


def wait_for_claim(server: Server, seconds: float) -> httpx.Response:
    with server.client(RUNNER) as runner:
        return runner.post(
            "/api/runner/claim", json={"runner_id": "waiting", "wait_seconds": seconds}
        )


def test_a_waiting_claim_gets_a_run_submitted_while_it_waits(server: Server) -> None:
    with ThreadPoolExecutor(1) as pool, server.client(ALICE) as alice:
        waiting = pool.submit(wait_for_claim, server, 20)
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        answer = waiting.result(30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["run"]["run_id"] == run_id


def test_many_waiting_claims_share_few_runs_one_each(server: Server) -> None:
    with ThreadPoolExecutor(12) as pool, server.client(ALICE) as alice:
        waiting = [pool.submit(wait_for_claim, server, 4) for _ in range(12)]
        submitted = {
            alice.post("/api/runs", json={"task": str(i)}).json()["run_id"] for i in range(3)
        }
        answers = [w.result(30) for w in waiting]
    claimed = [a.json()["run"]["run_id"] for a in answers if a.status_code == 200]
    assert sorted(claimed) == sorted(submitted)
    assert sum(a.status_code == 204 for a in answers) == 9
