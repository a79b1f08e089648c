"""Scripted runners and plan helpers for the coordinator tests (over real HTTP)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from adapters import git

DIAMOND = [  # a, b → c → d
    {"key": "a", "title": "write a", "depends_on": []},
    {"key": "b", "title": "write b", "depends_on": []},
    {"key": "c", "title": "write c", "depends_on": ["a", "b"]},
    {"key": "d", "title": "write d", "depends_on": ["c"]},
]


def set_plan(client: httpx.Client, run_id: str, subtasks: list[dict[str, Any]], **body: Any) -> Any:
    """PUT the work plan; the 201 body."""
    answer = client.put(f"/api/runs/{run_id}/work-plan", json={"subtasks": subtasks, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def claim_child(runner: httpx.Client, wait: float = 10) -> dict[str, Any] | None:
    """Claim the next child run (None when none came within `wait` seconds)."""
    answer = runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": wait})
    if answer.status_code == 204:
        return None
    assert answer.status_code == 200, answer.text
    return answer.json()


def report(runner: httpx.Client, lease: dict[str, Any], outcome: str, **extra: Any) -> Any:
    run_id = lease["run"]["run_id"]
    answer = runner.post(
        f"/api/runs/{run_id}/report",
        json={"fencing_token": lease["fencing_token"], "outcome": outcome, **extra},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def key_of(client: httpx.Client, run_id: str) -> str:
    """The subtask a child run does."""
    answer = client.get(f"/api/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["subtask_key"])


def commit_work(repo: Path, workdir: Path, lease: dict[str, Any], key: str) -> dict[str, Any]:
    """What a runner does in a repository: a worktree on the run's own branch from its
    originating branch, one new file `<key>.txt`, a commit; the report's fields."""
    run = lease["run"]
    branch = f"runledger/{run['run_id']}"
    tree = workdir / run["run_id"]
    git.add_worktree(repo, tree, branch, run["originating_branch"])
    (tree / f"{key}.txt").write_text(f"work of {key}\n")
    assert git.commit_all(tree, f"subtask {key}")
    files = sorted(p.name for p in tree.iterdir() if p.name != ".git")
    return {"branch": branch, "tree_hash": git.tree_of(tree, "HEAD"), "files_seen": files}


def events_of(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/api/runs/{run_id}/events", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


def wait_until(
    client: httpx.Client, run_id: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll the run's read model until `check(run)` holds (20 s at most)."""
    deadline = time.monotonic() + 20
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if check(run):
            return run
        assert time.monotonic() < deadline, f"{what}: {run}"
        time.sleep(0.05)
