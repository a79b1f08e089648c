"""A runner reports its own branch: never a ref, HEAD, the run's target or another run's."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ALICE, RUNNER, Server


def claimed_run(server: Server) -> tuple[str, int]:
    """A fresh run of alice's from `dev`, claimed by the runner: (run_id, fencing_token)."""
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = alice.post("/api/runs", json={"task": "t", "originating_branch": "dev"}).json()[
            "run_id"
        ]
        claim = runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": 10})
        assert claim.status_code == 200, claim.text
        assert claim.json()["run"]["run_id"] == run_id
        return run_id, int(claim.json()["fencing_token"])


def report(server: Server, run_id: str, token: int, branch: str) -> httpx.Response:
    with server.client(RUNNER) as runner:
        return runner.post(
            f"/api/runs/{run_id}/report",
            json={"fencing_token": token, "outcome": "changes", "branch": branch},
        )


@pytest.mark.parametrize(
    "branch",
    [
        "refs/heads/main",
        "refs/heads/dev",
        "@",
        "HEAD",
        "FETCH_HEAD",
        "dev",
        "runledger/00000000-0000-4000-8000-000000000001",
    ],
)
def test_a_reported_branch_that_is_not_the_runs_own_is_refused(
    shared_server: Server, branch: str
) -> None:
    run_id, token = claimed_run(shared_server)
    answer = report(shared_server, run_id, token, branch)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == "branch"


def test_the_runs_own_branch_is_accepted(shared_server: Server) -> None:
    run_id, token = claimed_run(shared_server)
    answer = report(shared_server, run_id, token, f"runledger/{run_id}")
    assert answer.status_code == 200, answer.text


def test_a_branch_of_the_runners_choosing_is_accepted(shared_server: Server) -> None:
    run_id, token = claimed_run(shared_server)
    answer = report(shared_server, run_id, token, "feature/runledger-work")
    assert answer.status_code == 200, answer.text


def test_a_stale_report_is_refused_for_its_lease_not_its_branch(shared_server: Server) -> None:
    run_id, token = claimed_run(shared_server)
    answer = report(shared_server, run_id, token + 1, "dev")
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "stale_lease"
