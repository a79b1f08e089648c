"""The reference runner in a real git repository, and the real merge, over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from adapters import git
from tests.e2e.runner_helpers import runner, wait_for_status
from tests.support import ALICE, BOB, Server, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def demo_project(alice: httpx.Client, repo: Path) -> str:
    """A project on the test repository; its id."""
    project = alice.post("/api/projects", json={"name": "demo", "repository_path": str(repo)})
    assert project.status_code == 201, project.text
    return str(project.json()["project_id"])


def test_the_runner_edits_a_file_and_the_approved_run_is_merged(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    with server.client(ALICE) as alice:
        project_id = demo_project(alice, repo)
        submitted = alice.post(f"/api/projects/{project_id}/runs", json={"task": "shout two"})
        assert submitted.status_code == 202, submitted.text
        run_id = submitted.json()["run_id"]

        command = "sed -i 's/two/TWO/' app.py && echo edited app.py && echo done >&2"
        with runner(server, tmp_path / "work", command, "--once"):
            run = wait_for_status(alice, run_id, "awaiting_review")
        assert run["diff_stats"] == {"files": 1, "added": 1, "removed": 1}
        assert run["branch"] == f"runledger/{run_id}"

        events = alice.get(f"/api/runs/{run_id}/events").json()["events"]
        types = [e["type"] for e in events]
        # The runner confirms its claim with a heartbeat as it starts (lease.renewed).
        started = [t for t in types if t != "lease.renewed"]
        assert started[:3] == ["run.submitted", "run.claimed", "step.started"]
        assert "lease.renewed" in types[:4]
        outputs = [e["data"] for e in events if e["type"] == "tool.output"]
        assert {"stream": "stdout", "text": "edited app.py"} in outputs
        assert {"stream": "stderr", "text": "done"} in outputs

        files = alice.get(f"/api/runs/{run_id}/files")
        assert files.status_code == 200, files.text
        assert files.json()["files"] == [
            {"path": "app.py", "status": "modified", "added": 1, "removed": 1}
        ]
        diff = alice.get(f"/api/runs/{run_id}/files/app.py")
        assert diff.status_code == 200 and "+TWO" in diff.text and "-two" in diff.text
        assert alice.get(f"/api/runs/{run_id}/files/nope.py").status_code == 404

        approved = alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "merged"
        run = alice.get(
            f"/api/runs/{run_id}", params={"min_position": approved.json()["position"]}
        ).json()
        commit = run["merge_result"].removeprefix("merged:")
        assert git.git(repo, "rev-parse", "main") == commit
        assert (repo / "app.py").read_text() == "one\nTWO\nthree\n"
        assert git.git(repo, "status", "--porcelain") == ""
        assert not (tmp_path / "work" / run_id).exists()  # the worktree is removed


def test_two_runs_editing_the_same_line_the_second_fails_to_merge(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    with server.client(ALICE) as alice:
        project_id = demo_project(alice, repo)
        first, second = (
            alice.post(f"/api/projects/{project_id}/runs", json={"task": task}).json()["run_id"]
            for task in ("A", "B")
        )
        with runner(server, tmp_path / "work", 'sed -i "s/two/$RUNLEDGER_TASK/" app.py'):
            wait_for_status(alice, first, "awaiting_review")
            wait_for_status(alice, second, "awaiting_review")

        assert (
            alice.post(f"/api/runs/{first}/review", json={"approved": True}).json()["status"]
            == "merged"
        )
        merged_head = git.git(repo, "rev-parse", "main")
        failed = alice.post(f"/api/runs/{second}/review", json={"approved": True})
        assert failed.status_code == 200 and failed.json()["status"] == "merge_failed"
        run = alice.get(
            f"/api/runs/{second}", params={"min_position": failed.json()["position"]}
        ).json()
        assert run["conflicting_files"] == ["app.py"]
        assert git.git(repo, "rev-parse", "main") == merged_head
        assert (repo / "app.py").read_text() == "one\nA\nthree\n"
        assert git.git(repo, "status", "--porcelain") == ""


def test_a_dirty_checkout_keeps_the_run_in_review_until_approved_again(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    with server.client(ALICE) as alice:
        project_id = demo_project(alice, repo)
        run_id = alice.post(f"/api/projects/{project_id}/runs", json={"task": "x"}).json()["run_id"]
        with runner(server, tmp_path / "work", "echo new > new.txt", "--once"):
            wait_for_status(alice, run_id, "awaiting_review")
        (repo / "app.py").write_text("uncommitted\n")
        refused = alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
        assert refused.status_code == 409 and refused.json()["status"] == "awaiting_review"
        assert "uncommitted" in refused.json()["detail"]
        git.git(repo, "checkout", "--", "app.py")
        approved = alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
        assert approved.json()["status"] == "merged"
        assert (repo / "new.txt").read_text() == "new\n"


def test_the_diff_endpoints_refuse_what_they_cannot_show(server: Server, repo: Path) -> None:
    with server.client(ALICE) as alice, server.client(BOB) as bob:
        plain = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        project_id = demo_project(alice, repo)
        unstarted = alice.post(f"/api/projects/{project_id}/runs", json={"task": "t"}).json()
        cases = [
            (alice, "/api/runs/not-a-uuid/files", 400),
            (alice, "/api/runs/not-a-uuid/files/app.py", 400),
            (alice, f"/api/runs/{plain}/files", 404),  # no repository
            (alice, f"/api/runs/{unstarted['run_id']}/files", 404),  # no branch yet
            (alice, f"/api/runs/{unstarted['run_id']}/files/app.py", 404),
            (bob, f"/api/runs/{plain}/files", 404),  # not his
        ]
        for client, path, status in cases:
            answer = client.get(path)
            assert answer.status_code == status, (path, answer.text)
            assert answer.json()["error"] in ("invalid_request", "not_found")
