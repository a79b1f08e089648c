"""The reference runner as a planner (`runledger runner --plan`): its command's output
becomes the run's work plan, and reference runners do the children in a real repository."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from adapters import git
from tests.e2e.runner_helpers import runner, wait_for_status
from tests.support import ALICE, Server, make_repo

PLAN = {
    "subtasks": [
        {"key": "a", "title": "write a", "depends_on": []},
        {"key": "b", "title": "write b", "depends_on": ["a"]},
    ]
}
# A worker "agent": writes a file named after its task, and records what it found there.
WORKER = 'f=$(echo "$RUNLEDGER_TASK" | tr " " _).txt; ls > "$f.seen"; echo done > "$f"'


def test_a_planner_runner_turns_the_run_into_a_plan_that_worker_runners_carry_out(
    server: Server, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLAN))
    with server.client(ALICE) as alice:
        project = alice.post("/api/projects", json={"name": "p", "repository_path": str(repo)})
        project_id = project.json()["project_id"]
        run_id = alice.post(f"/api/projects/{project_id}/runs", json={"task": "a and b"}).json()[
            "run_id"
        ]

        with runner(server, tmp_path / "planner", f"cat {plan_file}", "--plan", "--once") as proc:
            wait_for_status(alice, run_id, "in_progress")
            plan = _wait_for_plan(alice, run_id)
            # (--once: it ends by itself once its run is done, its checkout removed; stopped
            # as soon as the plan shows, it could be cut short between the two)
            assert proc.wait(timeout=30) == 0
        assert [s["key"] for s in plan["subtasks"]] == ["a", "b"]
        assert git.git(repo, "worktree", "list").count("\n") == 0  # the planner's checkout went

        with runner(server, tmp_path / "workers", WORKER):
            run = wait_for_status(alice, run_id, "awaiting_review", timeout=60)
        assert run["coordinator_status"] == "awaiting_assembly"
        assert run["diff_stats"]["files"] == 4  # write_a.txt, write_b.txt and what each saw

        approved = alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "merged"
        assert (repo / "write_a.txt").read_text() == "done\n"
        assert "write_a.txt" in (repo / "write_b.txt.seen").read_text()  # b saw a's work


def test_a_planner_whose_output_is_no_plan_fails_the_run(server: Server, tmp_path: Path) -> None:
    with server.client(ALICE) as alice:
        run_id = alice.post("/api/runs", json={"task": "plan this"}).json()["run_id"]

        with runner(server, tmp_path / "planner", "echo not json", "--plan", "--once"):
            run = wait_for_status(alice, run_id, "failed")

        assert run["failure"]["category"] == "agent"
        assert "not a work plan" in run["failure"]["message"]


def test_a_plan_the_server_refuses_fails_the_run_with_its_reason(
    server: Server, tmp_path: Path
) -> None:
    cyclic = [{"key": "a", "title": "A", "depends_on": ["a"]}]
    with server.client(ALICE) as alice:
        run_id = alice.post("/api/runs", json={"task": "plan this"}).json()["run_id"]

        command = f"echo '{json.dumps(cyclic)}'"
        with runner(server, tmp_path / "planner", command, "--plan", "--once"):
            run = wait_for_status(alice, run_id, "failed")

        assert "a → a" in run["failure"]["message"]


def _wait_for_plan(client: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = client.get(f"/api/runs/{run_id}/work-plan")
        if answer.status_code == 200:
            return answer.json()
        time.sleep(0.1)
    raise AssertionError("the planner never set a plan")
