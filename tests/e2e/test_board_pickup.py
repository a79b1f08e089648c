"""Auto-pickup end to end: a real `runledger serve` on both stores, scripted runners.

Five ready tasks under a limit of two: the engine starts them top first, never more than
two of the board's runs active at once (judged from the event log), and all five end
done. The settings and ready-all endpoints, and what auto-pickup leaves alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.board_helpers import act, board, columns, create_task
from tests.e2e.coordination_chaos import Runners
from tests.e2e.helpers import read_frames, wait_for
from tests.e2e.pickup_helpers import (
    auto_pickup,
    board_log,
    claims,
    most_active,
    starts,
    task_runs,
)
from tests.e2e.projects_helpers import Site, User, create_project, expect, expect_invalid
from tests.support import RUNNER


@pytest.fixture
def runner(site: Site) -> Iterator[httpx.Client]:
    """The runner key's client on the module's server."""
    with site.server.client(RUNNER) as client:
        yield client


def backlog(alice: User, project_id: str, *titles: str) -> dict[str, str]:
    """Tasks made in the backlog in this order; title → task id."""
    return {title: create_task(alice, project_id, title)["task_id"] for title in titles}


def approve_until_done(alice: User, project_id: str, count: int, timeout: float = 60) -> None:
    """Approve the board's runs that await review until `count` tasks are done."""
    deadline = time.monotonic() + timeout
    while True:
        shown = {c["name"]: c["tasks"] for c in board(alice, project_id)["columns"]}
        if len(shown["done"]) == count:
            return
        for task in shown["in_review"]:
            answer = alice.post(f"/api/runs/{task['run_id']}/review", json={"approved": True})
            assert answer.status_code in (200, 409), answer.text  # 409: approved already
        assert time.monotonic() < deadline, f"the board is still moving: {shown}"
        time.sleep(0.05)


def test_five_tasks_under_a_limit_of_two_start_in_order_and_all_end_done(site: Site) -> None:
    with site.user("pickup-five", "alice") as alice:
        pid = create_project(alice)["project_id"]
        ids = backlog(alice, pid, "a", "b", "c", "d", "e")
        expect(alice.post(f"/api/projects/{pid}/backlog/ready-all"), 200)
        act(alice, pid, ids["e"], "reorder", before_task_id=ids["a"])  # the user's order
        order = [ids[t] for t in ("e", "a", "b", "c", "d")]

        with Runners([site.server], threads=3, changes=True) as runners:
            auto_pickup(alice, pid, 2)
            approve_until_done(alice, pid, 5)
        assert runners.errors == [] and runners.lost == []

        assert columns(alice, pid) == {"done": ["e", "a", "b", "c", "d"]}
        events = board_log(alice, pid)
        assert most_active(events) == 2
        assert starts(events) == order
        assert claims(events, task_runs(events)) == order
        assert len(task_runs(events)) == 5
        assert {e["actor"] for e in events if e["type"] == "backlog.task_started"} == {
            "auto-pickup"
        }


def test_auto_pickup_starts_nothing_while_off_and_leaves_failed_tasks_alone(
    alice: User, runner: httpx.Client
) -> None:
    pid = create_project(alice)["project_id"]
    ids = backlog(alice, pid, "a", "b")
    act(alice, pid, ids["a"], "ready")
    assert columns(alice, pid) == {"backlog": ["b"], "ready": ["a"]}

    auto_pickup(alice, pid, 1)
    lease = expect(
        runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": 10}), 200
    )
    assert lease["run"]["task"] == "a"
    body = {"fencing_token": lease["fencing_token"], "outcome": "failed"}
    expect(runner.post(f"/api/runs/{lease['run']['run_id']}/report", json=body), 200)
    # Failed: back in ready with its failure, and not started again by the policy.
    expect(runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": 1}), 204)
    shown = board(alice, pid)["columns"][1]["tasks"]
    assert [(t["title"], t["last_failure"] is not None) for t in shown] == [("a", True)]

    auto_pickup(alice, pid, 1, on=False)
    act(alice, pid, ids["b"], "ready")
    expect(runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": 1}), 204)
    assert starts(board_log(alice, pid)) == [ids["a"]]


def test_settings_are_answered_and_shown_on_the_board(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    assert board(alice, pid)["settings"] == {"auto_pickup": False, "max_concurrent_runs": 1}

    body = auto_pickup(alice, pid, 7)
    assert {k: body[k] for k in ("project_id", "auto_pickup", "max_concurrent_runs")} == {
        "project_id": pid,
        "auto_pickup": True,
        "max_concurrent_runs": 7,
    }
    assert body["sequence"] >= 2 and body["position"] > 0
    only_flag = alice.put(f"/api/projects/{pid}/backlog/settings", json={"auto_pickup": False})
    assert expect(only_flag, 200)["max_concurrent_runs"] == 7  # kept when not given
    assert board(alice, pid)["settings"] == {"auto_pickup": False, "max_concurrent_runs": 7}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"auto_pickup": True, "max_concurrent_runs": 0}, "max_concurrent_runs"),
        ({"auto_pickup": True, "max_concurrent_runs": 51}, "max_concurrent_runs"),
        ({"auto_pickup": True, "max_concurrent_runs": "2"}, "max_concurrent_runs"),
        ({"auto_pickup": "yes"}, "auto_pickup"),
        ({"max_concurrent_runs": 2}, "auto_pickup"),
        ({"auto_pickup": True, "limit": 2}, "limit"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    alice: User, body: dict[str, object], field: str
) -> None:
    pid = create_project(alice)["project_id"]
    expect_invalid(alice.put(f"/api/projects/{pid}/backlog/settings", json=body), field)
    assert board(alice, pid)["settings"] == {"auto_pickup": False, "max_concurrent_runs": 1}


def test_ready_all_answers_the_ready_column(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    ids = backlog(alice, pid, "a", "b", "c")
    act(alice, pid, ids["b"], "ready")

    body = expect(alice.post(f"/api/projects/{pid}/backlog/ready-all", json={}), 200)

    assert body["ready"] == [ids["b"], ids["a"], ids["c"]]
    assert columns(alice, pid) == {"ready": ["b", "a", "c"]}
    again = expect(alice.post(f"/api/projects/{pid}/backlog/ready-all"), 200)
    assert again["ready"] == body["ready"] and again["sequence"] == body["sequence"]


def test_another_users_settings_and_ready_all_are_not_found(alice: User, bob: User) -> None:
    pid = create_project(alice)["project_id"]
    backlog(alice, pid, "a")
    body = {"auto_pickup": True, "max_concurrent_runs": 2}
    assert bob.put(f"/api/projects/{pid}/backlog/settings", json=body).status_code == 404
    assert bob.post(f"/api/projects/{pid}/backlog/ready-all").status_code == 404
    assert columns(alice, pid) == {"backlog": ["a"]}
    assert board(alice, pid)["settings"]["auto_pickup"] is False


def test_a_ui_keeps_a_board_current_from_the_projects_global_stream(
    alice: User, runner: httpx.Client
) -> None:
    pid = create_project(alice)["project_id"]
    ids = backlog(alice, pid, "a", "b")
    auto_pickup(alice, pid, 1)
    expect(alice.post(f"/api/projects/{pid}/backlog/ready-all"), 200)
    claim = {"runner_id": "r", "wait_seconds": 10}
    lease = expect(runner.post("/api/runner/claim", json=claim), 200)
    body = {"fencing_token": lease["fencing_token"], "outcome": "no_changes"}
    expect(runner.post(f"/api/runs/{lease['run']['run_id']}/report", json=body), 200)
    wait_for(
        lambda: columns(alice, pid) == {"in_progress": ["b"], "done": ["a"]},
        10,
        "the policy to start b",
    )
    log = board_log(alice, pid)

    frames = read_frames(
        alice,
        "/api/events/stream",
        params={"project_id": pid, "after": 0},
        until=lambda frame: frame.id == log[-1]["position"],
    )

    assert [(f.id, f.event) for f in frames] == [(e["position"], e["type"]) for e in log]
    types = [f.event for f in frames]
    assert types[:6] == [
        "project.created",
        "backlog.task_created",
        "backlog.task_created",
        "backlog.settings_changed",
        "backlog.task_moved",
        "backlog.task_moved",
    ]
    assert types.count("backlog.task_started") == 2 and "run.completed" in types
    assert starts(log) == [ids["a"], ids["b"]]
