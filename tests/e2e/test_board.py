"""The project board end to end: a real `runledger serve` on both stores, real HTTP, a
scripted runner. Tasks are made, moved and ordered; a started task's column follows its
run, and a failed run sends it back to ready with its failure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.board_helpers import act, board, columns, create_task, task_on_board, tasks_path
from tests.e2e.projects_helpers import Site, User, create_project, expect, expect_invalid
from tests.support import RUNNER


@pytest.fixture
def runner(site: Site) -> Iterator[httpx.Client]:
    """The runner key's client on the module's server."""
    with site.server.client(RUNNER) as client:
        yield client


def claim_run(runner: httpx.Client, run_id: str) -> int:
    """Claim the run (the only claimable one); its fencing token."""
    answer = runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 10})
    lease = expect(answer, 200)
    assert lease["run"]["run_id"] == run_id, lease
    return int(lease["fencing_token"])


def report(runner: httpx.Client, run_id: str, token: int, outcome: str, **extra: Any) -> None:
    body = {"fencing_token": token, "outcome": outcome, **extra}
    expect(runner.post(f"/api/runs/{run_id}/report", json=body), 200)


def ready_tasks(alice: User, project_id: str, *titles: str) -> dict[str, str]:
    """Tasks made and moved to ready in this order; title → task id."""
    ids = {title: create_task(alice, project_id, title)["task_id"] for title in titles}
    for task_id in ids.values():
        expect(act(alice, project_id, task_id, "ready"), 200)
    return ids


def test_new_tasks_go_to_the_bottom_of_the_backlog_with_their_rank(alice: User) -> None:
    pid = create_project(alice)["project_id"]

    first = create_task(alice, pid, "one")
    second = create_task(alice, pid, "two", description="more")

    assert (first["column"], first["rank"], second["rank"]) == ("backlog", 0, 1)
    assert second["description"] == "more" and second["position"] > first["position"]
    assert columns(alice, pid) == {"backlog": ["one", "two"]}


def test_moving_and_reordering_keeps_each_column_in_the_users_order(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    ids = ready_tasks(alice, pid, "a", "b", "c")
    create_task(alice, pid, "d")

    moved = expect(act(alice, pid, ids["c"], "reorder", before_task_id=ids["a"]), 200)
    expect(act(alice, pid, ids["a"], "reorder", after_task_id=ids["b"]), 200)
    expect(act(alice, pid, ids["b"], "backlog"), 200)

    assert (moved["column"], moved["rank"]) == ("ready", 0)
    assert columns(alice, pid) == {"backlog": ["d", "b"], "ready": ["c", "a"]}


def test_archiving_hides_a_task_and_deleting_removes_it(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    ids = ready_tasks(alice, pid, "a", "b")

    expect(act(alice, pid, ids["a"], "archive"), 200)
    deleted = alice.delete(tasks_path(pid, ids["b"]))

    assert deleted.status_code == 204 and int(deleted.headers["x-position"]) > 0
    assert columns(alice, pid) == {}
    expect(alice.delete(tasks_path(pid, ids["b"])), 404)


def test_editing_changes_the_title_and_description(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    task_id = create_task(alice, pid, "draft")["task_id"]

    edited = expect(alice.patch(tasks_path(pid, task_id), json={"description": "why"}), 200)

    assert (edited["title"], edited["description"]) == ("draft", "why")
    assert task_on_board(alice, pid, task_id)["description"] == "why"


def test_reordering_against_a_task_of_another_column_is_refused(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    ids = ready_tasks(alice, pid, "a")
    other = create_task(alice, pid, "b")["task_id"]

    expect_invalid(act(alice, pid, ids["a"], "reorder", before_task_id=other), "before_task_id")
    expect_invalid(act(alice, pid, ids["a"], "reorder"), "before_task_id")


def test_a_task_that_is_not_ready_cannot_start(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    task_id = create_task(alice, pid, "a")["task_id"]

    body = expect(act(alice, pid, task_id, "start"), 409)

    assert (body["error"], body["status"]) == ("conflict", "backlog")


def test_a_started_task_follows_its_run_to_review_and_done(
    alice: User, runner: httpx.Client
) -> None:
    pid = create_project(alice)["project_id"]
    ids = ready_tasks(alice, pid, "first", "second")
    expect(alice.patch(tasks_path(pid, ids["second"]), json={"description": "details"}), 200)
    expect(act(alice, pid, ids["second"], "reorder", before_task_id=ids["first"]), 200)

    started = expect(act(alice, pid, ids["second"], "start"), 202)
    run_id = started["run_id"]
    assert (started["task_id"], started["status"]) == (ids["second"], "pending")
    run = expect(
        alice.get(f"/api/runs/{run_id}", params={"min_position": started["position"]}), 200
    )
    assert (run["task"], run["task_id"], run["project_id"]) == (
        "second\n\ndetails",
        ids["second"],
        pid,
    )
    assert columns(alice, pid) == {"ready": ["first"], "in_progress": ["second"]}

    token = claim_run(runner, run_id)
    assert task_on_board(alice, pid, ids["second"])["run"]["status"] == "in_progress"
    report(runner, run_id, token, "changes")
    assert columns(alice, pid) == {"ready": ["first"], "in_review": ["second"]}
    expect(alice.post(f"/api/runs/{run_id}/review", json={"approved": True}), 200)

    shown = task_on_board(alice, pid, ids["second"])
    assert (shown["column"], shown["run"]["status"], shown["last_failure"]) == (
        "done",
        "merged",
        None,
    )
    assert shown["run"]["open_gates"] == 0 and shown["run"]["last_event_at"]
    expect(act(alice, pid, ids["second"], "start"), 409)


def test_a_failed_run_sends_its_task_back_to_ready_with_the_failure(
    alice: User, runner: httpx.Client
) -> None:
    pid = create_project(alice)["project_id"]
    task_id = ready_tasks(alice, pid, "flaky")["flaky"]
    run_id = expect(act(alice, pid, task_id, "start"), 202)["run_id"]
    token = claim_run(runner, run_id)

    failure = {"category": "agent", "message": "it broke"}
    report(runner, run_id, token, "failed", failure=failure)

    shown = task_on_board(alice, pid, task_id)
    assert shown["column"] == "ready"
    assert shown["last_failure"] == {"run_id": run_id, **failure}
    again = expect(act(alice, pid, task_id, "start"), 202)
    assert again["run_id"] != run_id
    shown = task_on_board(alice, pid, task_id)
    assert (shown["column"], shown["last_failure"]["run_id"]) == ("in_progress", run_id)
    expect(alice.post(f"/api/runs/{again['run_id']}/cancel", json={}), 200)
    assert task_on_board(alice, pid, task_id)["column"] == "ready"


def test_a_retried_task_run_keeps_the_link_and_the_task_follows_it_to_done(
    alice: User, runner: httpx.Client
) -> None:
    pid = create_project(alice)["project_id"]
    task_id = ready_tasks(alice, pid, "flaky")["flaky"]
    failed = expect(act(alice, pid, task_id, "start"), 202)["run_id"]
    failure = {"category": "agent", "message": "it broke"}
    report(runner, failed, claim_run(runner, failed), "failed", failure=failure)

    retried = expect(alice.post(f"/api/runs/{failed}/retry", json={}), 201)

    run_id = retried["run_id"]
    assert retried["retried_from"] == failed and run_id != failed
    run = expect(
        alice.get(f"/api/runs/{run_id}", params={"min_position": retried["position"]}), 200
    )
    assert (run["task_id"], run["retried_from"], run["project_id"]) == (task_id, failed, pid)
    shown = task_on_board(alice, pid, task_id)
    assert (shown["column"], shown["run_id"]) == ("in_progress", run_id)
    assert shown["last_failure"] == {"run_id": failed, **failure}
    report(runner, run_id, claim_run(runner, run_id), "no_changes")
    shown = task_on_board(alice, pid, task_id)
    assert (shown["column"], shown["run"]["status"]) == ("done", "completed")
    assert shown["last_failure"]["run_id"] == failed  # why it took a second run
    started = expect(alice.get("/api/events", params={"project_id": pid, "type": "backlog.*"}), 200)
    assert [e["data"]["retried_from"] for e in started["events"][-2:]] == [None, failed]


def test_retrying_a_run_its_task_has_left_makes_a_run_the_board_does_not_follow(
    alice: User, runner: httpx.Client
) -> None:
    pid = create_project(alice)["project_id"]
    task_id = ready_tasks(alice, pid, "moved")["moved"]
    failed = expect(act(alice, pid, task_id, "start"), 202)["run_id"]
    report(
        runner,
        failed,
        claim_run(runner, failed),
        "failed",
        failure={"category": "agent", "message": "no"},
    )
    expect(act(alice, pid, task_id, "backlog"), 200)

    retried = expect(alice.post(f"/api/runs/{failed}/retry", json={}), 201)

    run = expect(
        alice.get(f"/api/runs/{retried['run_id']}", params={"min_position": retried["position"]}),
        200,
    )
    assert (run["task_id"], run["retried_from"], run["project_id"]) == (None, failed, pid)
    assert columns(alice, pid) == {"backlog": ["moved"]}
    expect(alice.post(f"/api/runs/{retried['run_id']}/cancel", json={}), 200)


def test_a_repeated_start_with_its_idempotency_key_makes_one_run(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    task_id = ready_tasks(alice, pid, "once")["once"]
    headers = {"Idempotency-Key": "start-once"}

    first = expect(alice.post(f"{tasks_path(pid, task_id)}/start", headers=headers), 202)
    second = expect(alice.post(f"{tasks_path(pid, task_id)}/start", headers=headers), 202)

    assert first == second
    expect(alice.post(f"/api/runs/{first['run_id']}/cancel", json={}), 200)


def test_another_users_board_and_tasks_are_not_found(alice: User, bob: User) -> None:
    pid = create_project(alice)["project_id"]
    task_id = create_task(alice, pid, "mine")["task_id"]

    assert bob.get(f"/api/projects/{pid}/board").status_code == 404
    assert act(bob, pid, task_id, "ready").status_code == 404
    assert bob.post(tasks_path(pid), json={"title": "x"}).status_code == 404
    assert board(alice, pid)["columns"][0]["tasks"][0]["column"] == "backlog"


def test_board_events_are_on_the_projects_global_log(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    task_id = ready_tasks(alice, pid, "a")["a"]

    body = expect(alice.get("/api/events", params={"project_id": pid, "type": "backlog.*"}), 200)

    events = body["events"]
    assert [e["type"] for e in events] == ["backlog.task_created", "backlog.task_moved"]
    assert all(e["project_id"] == pid and e.get("run_id") is None for e in events), events
    assert events[1]["data"] == {"task_id": task_id, "column": "ready", "position": 0}
