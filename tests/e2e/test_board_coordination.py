"""A board task whose run becomes a coordinator, end to end on both stores: its runner
sets a work plan, and the task follows the coordinator (in progress while it dispatches,
in review at its assembly, done once merged); its children, which carry no task, never
move a task, and a child's failure and retry move the task as its coordinator goes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.board_helpers import act, columns, create_task, task_on_board
from tests.e2e.coordination_helpers import claim_child, report, wait_until
from tests.e2e.projects_helpers import expect, make_repo
from tests.support import ALICE, RUNNER, Server

PLAN = [  # a → b
    {"key": "a", "title": "write a", "depends_on": []},
    {"key": "b", "title": "write b", "depends_on": ["a"]},
]


class Board:
    """Alice's project with two ready tasks (`lead`, whose run will coordinate, and
    `bystander`), and the runner that works for her."""

    def __init__(self, alice: httpx.Client, runner: httpx.Client, repo: Path | None) -> None:
        self.alice, self.runner = alice, runner
        self.plan_position = 0
        body = {"name": "p"} if repo is None else {"name": "p", "repository_path": str(repo)}
        self.pid = expect(alice.post("/api/projects", json=body), 201)["project_id"]
        self.ids = {t: create_task(alice, self.pid, t)["task_id"] for t in ("lead", "bystander")}
        for task_id in self.ids.values():
            expect(act(alice, self.pid, task_id, "ready"), 200)

    def shown(self, title: str = "lead") -> dict[str, Any]:
        """How the board shows a task now."""
        return task_on_board(self.alice, self.pid, self.ids[title])

    def columns(self) -> dict[str, list[str]]:
        return columns(self.alice, self.pid)

    def start_coordinator(self, **plan: Any) -> str:
        """Start `lead`; its runner claims the run and makes it a coordinator of PLAN."""
        run_id = expect(act(self.alice, self.pid, self.ids["lead"], "start"), 202)["run_id"]
        lease = claim_child(self.runner)
        assert lease is not None and lease["run"]["run_id"] == run_id, lease
        body = {"subtasks": PLAN, "fencing_token": lease["fencing_token"], **plan}
        plan = expect(self.runner.put(f"/api/runs/{run_id}/work-plan", json=body), 201)
        self.plan_position = int(plan["position"])
        return str(run_id)

    def run_child(self, coordinator: str, outcome: str) -> str:
        """Claim the next child, check it carries no task, end it with `outcome`."""
        lease = claim_child(self.runner)
        assert lease is not None
        child = expect(self.alice.get(f"/api/runs/{lease['run']['run_id']}"), 200)
        assert (child["parent_run_id"], child["task_id"]) == (coordinator, None), child
        assert self.shown()["column"] == "in_progress"  # a child's claim moves no task
        failure = {"failure": {"category": "agent", "message": "no"}}
        report(self.runner, lease, outcome, **(failure if outcome == "failed" else {}))
        return str(child["run_id"])


@pytest.fixture
def board(server: Server, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Board]:
    """A board on a fresh server; with a git repository when the test asks for one."""
    repo = make_repo(tmp_path / "repo") if getattr(request, "param", False) else None
    with ExitStack() as stack:
        alice = stack.enter_context(server.client(ALICE))
        runner = stack.enter_context(server.client(RUNNER))
        yield Board(alice, runner, repo)


def test_a_tasks_coordinator_is_in_progress_while_it_dispatches_then_in_review_then_done(
    board: Board,
) -> None:
    coordinator = board.start_coordinator()
    at = {"min_position": board.plan_position}
    plan = expect(board.alice.get(f"/api/runs/{coordinator}/work-plan", params=at), 200)
    assert plan["status"] in ("planned", "dispatching")
    assert board.columns() == {"ready": ["bystander"], "in_progress": ["lead"]}

    for _ in PLAN:
        board.run_child(coordinator, "no_changes")
    wait_until(board.alice, coordinator, lambda r: r["status"] == "awaiting_review", "assembly")

    shown = board.shown()
    assert (shown["column"], shown["run_id"]) == ("in_review", coordinator)
    approved = expect(
        board.alice.post(f"/api/runs/{coordinator}/review", json={"approved": True}), 200
    )
    assert approved["status"] in ("merged", "completed")
    shown = board.shown()
    assert (shown["column"], shown["run"]["status"], shown["last_failure"]) == (
        "done",
        approved["status"],
        None,
    )
    assert board.shown("bystander")["run"] is None
    assert board.columns() == {"ready": ["bystander"], "done": ["lead"]}


@pytest.mark.parametrize("board", [True], indirect=True)
def test_with_a_repository_the_tasks_coordinator_is_done_once_its_assembly_merged(
    board: Board,
) -> None:
    coordinator = board.start_coordinator()
    for _ in PLAN:
        board.run_child(coordinator, "no_changes")
    wait_until(board.alice, coordinator, lambda r: r["status"] == "awaiting_review", "assembly")
    assert board.shown()["column"] == "in_review"

    approved = expect(
        board.alice.post(f"/api/runs/{coordinator}/review", json={"approved": True}), 200
    )

    assert approved["status"] == "merged"
    assert board.columns() == {"ready": ["bystander"], "done": ["lead"]}


def test_a_failed_child_fails_the_tasks_coordinator_and_its_retry_carries_the_task_on(
    board: Board,
) -> None:
    coordinator = board.start_coordinator()
    failed_child = board.run_child(coordinator, "failed")
    wait_until(board.alice, coordinator, lambda r: r["status"] == "failed", "coordinator failed")

    shown = board.shown()
    assert shown["column"] == "ready"
    assert (shown["last_failure"]["run_id"], shown["last_failure"]["category"]) == (
        coordinator,
        "subtask",
    )
    retried = expect(board.alice.post(f"/api/runs/{failed_child}/retry", json={}), 201)
    run = wait_until(board.alice, coordinator, lambda r: r["status"] == "in_progress", "revived")
    assert run["task_id"] == board.ids["lead"]
    assert board.shown()["column"] == "in_progress"

    assert board.run_child(coordinator, "no_changes") == retried["run_id"]
    board.run_child(coordinator, "no_changes")
    wait_until(board.alice, coordinator, lambda r: r["status"] == "awaiting_review", "assembly")
    assert board.columns() == {"ready": ["bystander"], "in_review": ["lead"]}


def test_a_child_awaiting_its_review_leaves_the_tasks_coordinator_in_progress(
    board: Board,
) -> None:
    coordinator = board.start_coordinator(auto_approve_children=False)
    child = board.run_child(coordinator, "changes")
    wait_until(board.alice, child, lambda r: r["status"] == "awaiting_review", "child review")

    assert board.columns() == {"ready": ["bystander"], "in_progress": ["lead"]}
    expect(board.alice.post(f"/api/runs/{child}/review", json={"approved": True}), 200)
    board.run_child(coordinator, "no_changes")
    wait_until(board.alice, coordinator, lambda r: r["status"] == "awaiting_review", "assembly")
    assert board.columns() == {"ready": ["bystander"], "in_review": ["lead"]}
