"""Runs in a project end to end, and what deleting a project does to them: a real
`runledger serve`, real git repositories, both stores.

Most tests share one server per store (`site`, tests/e2e/conftest.py) and each speaks as a
user who has done nothing on it yet (`alice`). Deleting a project with claimed runs needs
the only claimable runs on its server, so that scene has a server of its own, played once
per store (`deleted`), and the tests check what it left.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.projects_helpers import (
    NOT_FOUND,
    User,
    caught_up,
    claim,
    create_project,
    events_of,
    expect,
    expect_invalid,
    get_project,
    head,
    list_projects,
    make_repo,
    project_run_ids,
    run_of,
    submit,
)
from tests.support import ALICE, RUNNER, Server, fresh_store


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on `main`."""
    return make_repo(tmp_path / "repo")


# -- runs in a project -----------------------------------------------------------------------


@dataclass
class ProjectRuns:
    """Alice's project (repository, branch "trunk") and another one, with runs submitted in
    every way: in the project's path or naming it in the body, with or without a branch,
    after its default branch became "next", in the other project, and in none."""

    pid: str
    other: dict[str, Any]
    by_path: dict[str, Any]
    branch: dict[str, Any]
    by_body: dict[str, Any]
    by_body_branch: dict[str, Any]
    later: dict[str, Any]
    elsewhere: dict[str, Any]
    loose: dict[str, Any]

    @property
    def ours(self) -> set[str]:
        """The runs submitted in the project."""
        runs = (self.by_path, self.branch, self.by_body, self.by_body_branch, self.later)
        return {r["run_id"] for r in runs}


@pytest.fixture
def project_runs(alice: User, repo: Path) -> ProjectRuns:
    project = create_project(alice, repository_path=str(repo), default_branch="trunk")
    other = create_project(alice, name="other")
    pid = project["project_id"]
    by_path = submit(alice, f"/api/projects/{pid}/runs", "in the project")
    branch = submit(alice, f"/api/projects/{pid}/runs", "on a branch", originating_branch="b1")
    by_body = submit(alice, "/api/runs", "via /api/runs", project_id=pid)
    by_body_branch = submit(
        alice, "/api/runs", "via /api/runs on b2", project_id=pid, originating_branch="b2"
    )
    expect(alice.patch(f"/api/projects/{pid}", json={"default_branch": "next"}), 200)
    later = submit(alice, f"/api/projects/{pid}/runs", "after the change")
    elsewhere = submit(alice, f"/api/projects/{other['project_id']}/runs", "other project")
    loose = submit(alice, "/api/runs", "no project")
    return ProjectRuns(
        pid=pid,
        other=other,
        by_path=by_path,
        branch=branch,
        by_body=by_body,
        by_body_branch=by_body_branch,
        later=later,
        elsewhere=elsewhere,
        loose=loose,
    )


def test_a_run_submitted_in_a_project_gets_its_repository_and_default_branch(
    alice: User, project_runs: ProjectRuns, repo: Path
) -> None:
    pid, by_path = project_runs.pid, project_runs.by_path
    run = run_of(alice, by_path["run_id"], by_path["position"])
    assert run["project_id"] == pid
    assert run["repository_path"] == str(repo)
    assert run["originating_branch"] == "trunk"
    assert run["status"] == "pending" and run["owner"] == alice.name


def test_a_run_submitted_in_a_project_may_name_its_own_branch(
    alice: User, project_runs: ProjectRuns, repo: Path
) -> None:
    branch = project_runs.branch
    run = run_of(alice, branch["run_id"], branch["position"])
    assert (run["repository_path"], run["originating_branch"]) == (str(repo), "b1")


def test_a_run_naming_a_project_in_its_body_gets_the_same_as_one_submitted_in_it(
    alice: User, project_runs: ProjectRuns, repo: Path
) -> None:
    pid, by_body = project_runs.pid, project_runs.by_body
    run = run_of(alice, by_body["run_id"], by_body["position"])
    assert run["project_id"] == pid
    assert (run["repository_path"], run["originating_branch"]) == (str(repo), "trunk")
    by_body_branch = project_runs.by_body_branch
    run = run_of(alice, by_body_branch["run_id"], by_body_branch["position"])
    assert run["originating_branch"] == "b2"


def test_the_submitted_event_records_the_project_its_repository_and_branch(
    alice: User, project_runs: ProjectRuns, repo: Path
) -> None:
    pid, by_path = project_runs.pid, project_runs.by_path
    submitted = events_of(alice, by_path["run_id"])[0]
    assert submitted["type"] == "run.submitted"
    assert submitted["data"]["project_id"] == pid
    assert submitted["data"]["repository_path"] == str(repo)
    assert submitted["data"]["originating_branch"] == "trunk"


def test_a_changed_default_branch_applies_to_runs_submitted_afterwards(
    alice: User, project_runs: ProjectRuns
) -> None:
    later = project_runs.later
    assert run_of(alice, later["run_id"], later["position"])["originating_branch"] == "next"


def test_a_run_in_another_project_or_in_none_has_neither_this_repository_nor_this_project(
    alice: User, project_runs: ProjectRuns
) -> None:
    elsewhere, loose = project_runs.elsewhere, project_runs.loose
    run = run_of(alice, elsewhere["run_id"], elsewhere["position"])
    assert (run["repository_path"], run["originating_branch"]) == (None, "main")
    assert run_of(alice, loose["run_id"], loose["position"])["project_id"] is None


def test_a_projects_runs_are_listed_under_it_and_by_its_id(
    alice: User, project_runs: ProjectRuns
) -> None:
    pid, other, elsewhere = project_runs.pid, project_runs.other, project_runs.elsewhere
    ours = project_runs.ours
    assert project_run_ids(alice, pid) == ours
    assert project_run_ids(alice, other["project_id"]) == {elsewhere["run_id"]}
    same = expect(alice.get("/api/runs", params={"project_id": pid, **caught_up(alice)}), 200)
    assert {r["run_id"] for r in same["items"]} == ours
    one = alice.get(f"/api/projects/{pid}/runs", params={"limit": 2, **caught_up(alice)})
    assert len(expect(one, 200)["items"]) == 2


def test_a_run_in_an_unknown_project_is_400_naming_it_in_the_body_and_404_in_the_path(
    alice: User,
) -> None:
    unknown = str(uuid.uuid4())
    expect_invalid(alice.post("/api/runs", json={"task": "t", "project_id": unknown}), "project_id")
    expect_invalid(alice.post("/api/runs", json={"task": "t", "project_id": "nope"}), "project_id")
    assert expect(alice.post(f"/api/projects/{unknown}/runs", json={"task": "t"}), 404) == (
        NOT_FOUND
    )
    assert expect(alice.get(f"/api/projects/{unknown}/runs"), 404) == NOT_FOUND
    expect_invalid(alice.post("/api/projects/nope/runs", json={"task": "t"}), "project_id")
    expect_invalid(alice.get("/api/projects/nope/runs"), "project_id")


def test_a_bad_run_body_in_a_project_is_400_and_submits_nothing(
    alice: User, project_runs: ProjectRuns
) -> None:
    pid, ours = project_runs.pid, project_runs.ours
    expect_invalid(alice.post(f"/api/projects/{pid}/runs", json={}), "task")
    expect_invalid(alice.post(f"/api/projects/{pid}/runs", json={"task": "   "}), "task")
    expect_invalid(
        alice.post(f"/api/projects/{pid}/runs", json={"task": "t", "project_id": pid}),
        "project_id",
    )
    expect_invalid(
        alice.post(f"/api/projects/{pid}/runs", json={"task": "t", "originating_branch": "a b"}),
        "originating_branch",
    )
    assert project_run_ids(alice, pid) == ours


# -- delete ----------------------------------------------------------------------------------


def test_deleting_a_project_needs_confirmation(alice: User) -> None:
    project = create_project(alice)
    pid = project["project_id"]
    run = submit(alice, f"/api/projects/{pid}/runs", "stays")
    for params in ({}, {"confirm": "false"}, {"confirm": "yes"}, {"confirm": ""}):
        body = expect(alice.delete(f"/api/projects/{pid}", params=params), 400)
        assert body["error"] == "invalid_request", (params, body)
        assert "confirm" in body["detail"], (params, body)
    assert expect(get_project(alice, pid), 200)["name"] == "demo"
    assert [p["project_id"] for p in list_projects(alice)] == [pid]
    assert run_of(alice, run["run_id"], head(alice))["status"] == "pending"
    assert [e["type"] for e in events_of(alice, run["run_id"])] == ["run.submitted"]


@dataclass
class Deleted:
    """A project deleted while some of its runs were finished and others active, on a
    server of its own, and what its runs and the others were right after the deletion."""

    server: Server
    repo: Path
    pid: str
    runs_path: str
    other: dict[str, Any]  # another project of alice's, kept
    completed: str
    cancelled: str
    claimed: str  # held by the runner at the deletion
    held: dict[str, Any]  # the runner's lease on `claimed`
    paused: str
    pending: list[str]
    bystander: str  # pending in the other project
    loose: str  # pending in no project
    at: int  # the position just before the deletion
    answer: httpx.Response  # the deletion's
    finished_history: dict[str, list[dict[str, Any]]]  # before the deletion
    untouched_history: dict[str, list[dict[str, Any]]]  # before the deletion
    history_after: dict[str, list[dict[str, Any]]]  # the same runs, right after it
    status_after: dict[str, str]  # the same runs, right after it


@pytest.fixture(scope="module")
def deleted(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deleted]:
    with ExitStack() as stack:
        base = tmp_path_factory.mktemp(f"delete-{store_kind}")
        url = stack.enter_context(fresh_store(store_kind, base))
        server = Server(url, base / "data").start()
        stack.callback(server.kill)
        repo = make_repo(base / "repo")
        with server.client(ALICE) as alice, server.client(RUNNER) as runner:
            yield delete_a_project_with_runs(server, alice, runner, repo)


def delete_a_project_with_runs(
    server: Server, alice: httpx.Client, runner: httpx.Client, repo: Path
) -> Deleted:
    project = create_project(alice, repository_path=str(repo))
    pid = project["project_id"]
    runs_path = f"/api/projects/{pid}/runs"
    other = create_project(alice, name="kept")

    # Finished before the deletion: one completed by its runner, one cancelled by hand.
    completed = submit(alice, runs_path, "finishes")["run_id"]
    lease = claim(runner, completed)
    done = runner.post(
        f"/api/runs/{completed}/report",
        json={"fencing_token": lease["fencing_token"], "outcome": "no_changes"},
    )
    expect(done, 200)
    cancelled = submit(alice, runs_path, "cancelled by hand")["run_id"]
    expect(alice.post(f"/api/runs/{cancelled}/cancel", json={"reason": "by hand"}), 200)

    # Active at the deletion: one a runner holds, one paused, two pending.
    claimed = submit(alice, runs_path, "being worked on")["run_id"]
    held = claim(runner, claimed)
    paused = submit(alice, runs_path, "paused")["run_id"]
    claim(runner, paused)
    expect(alice.post(f"/api/runs/{paused}/pause"), 200)
    pending = [submit(alice, runs_path, f"waiting {i}")["run_id"] for i in range(2)]
    bystander = submit(alice, f"/api/projects/{other['project_id']}/runs", "other")["run_id"]
    loose = submit(alice, "/api/runs", "no project")["run_id"]

    at = head(alice)
    expected = {completed: "completed", cancelled: "cancelled", claimed: "in_progress"}
    expected |= {paused: "paused", pending[0]: "pending", pending[1]: "pending"}
    for run_id, status in expected.items():
        assert run_of(alice, run_id, at)["status"] == status, run_id
    finished_history = {r: events_of(alice, r) for r in (completed, cancelled)}
    untouched_history = {r: events_of(alice, r) for r in (bystander, loose)}

    answer = alice.delete(f"/api/projects/{pid}", params={"confirm": "true"})

    # Read before any test claims the bystander.
    now = head(alice)
    spared = (completed, cancelled, bystander, loose)
    return Deleted(
        server=server,
        repo=repo,
        pid=pid,
        runs_path=runs_path,
        other=other,
        completed=completed,
        cancelled=cancelled,
        claimed=claimed,
        held=held,
        paused=paused,
        pending=pending,
        bystander=bystander,
        loose=loose,
        at=at,
        answer=answer,
        finished_history=finished_history,
        untouched_history=untouched_history,
        history_after={r: events_of(alice, r) for r in spared},
        status_after={r: run_of(alice, r, now)["status"] for r in spared},
    )


def test_a_claimed_run_of_a_project_carries_its_repository_and_default_branch(
    deleted: Deleted,
) -> None:
    held, repo = deleted.held, deleted.repo
    assert held["run"]["repository_path"] == str(repo)
    assert held["run"]["originating_branch"] == "main"


def test_a_confirmed_deletion_answers_204_with_no_body(deleted: Deleted) -> None:
    answer = deleted.answer
    assert answer.status_code == 204, answer.text
    assert answer.content == b""


def test_deleting_a_project_cancels_each_active_run_once_in_the_deleting_users_name(
    deleted: Deleted,
) -> None:
    d, at = deleted, deleted.at
    with d.server.client(ALICE) as alice:
        for run_id in [d.claimed, d.paused, *d.pending]:
            history = events_of(alice, run_id)
            cancels = [e for e in history if e["type"] == "run.cancelled"]
            assert len(cancels) == 1, (run_id, [e["type"] for e in history])
            assert history[-1] == cancels[0]
            assert cancels[0]["actor"] == "alice"
            assert cancels[0]["position"] > at
            run = run_of(alice, run_id, cancels[0]["position"])
            assert run["status"] == "cancelled", run
            assert run["ended_at"] is not None
            assert run["last_sequence"] == cancels[0]["sequence"]


def test_deleting_a_project_leaves_its_finished_runs_and_runs_outside_it_alone(
    deleted: Deleted,
) -> None:
    d = deleted
    for run_id, history in {**d.finished_history, **d.untouched_history}.items():
        assert d.history_after[run_id] == history, run_id
    status = d.status_after
    assert status[d.completed] == "completed"
    assert status[d.cancelled] == "cancelled"
    assert status[d.bystander] == "pending"
    assert status[d.loose] == "pending"


def test_a_runners_lease_on_a_run_cancelled_by_the_deletion_is_void(deleted: Deleted) -> None:
    d = deleted
    with d.server.client(RUNNER) as runner:
        late = runner.post(
            f"/api/runs/{d.claimed}/report",
            json={"fencing_token": d.held["fencing_token"], "outcome": "no_changes"},
        )
    assert expect(late, 409)["error"] == "stale_lease"


def test_nothing_of_a_deleted_project_is_left_to_claim(deleted: Deleted) -> None:
    with deleted.server.client(RUNNER) as runner:
        next_up = expect(runner.post("/api/runner/claim", json={"runner_id": "r1"}), 200)
    bystander = deleted.bystander
    assert next_up["run"]["run_id"] == bystander


def test_a_deleted_project_is_gone_for_every_endpoint(deleted: Deleted) -> None:
    pid, runs_path, other, bystander = (
        deleted.pid,
        deleted.runs_path,
        deleted.other,
        deleted.bystander,
    )
    with deleted.server.client(ALICE) as alice:
        assert expect(get_project(alice, pid), 404) == NOT_FOUND
        assert [p["project_id"] for p in list_projects(alice)] == [other["project_id"]]
        assert expect(alice.get(runs_path), 404) == NOT_FOUND
        assert expect(alice.post(runs_path, json={"task": "too late"}), 404) == NOT_FOUND
        expect_invalid(alice.post("/api/runs", json={"task": "t", "project_id": pid}), "project_id")
        assert expect(alice.patch(f"/api/projects/{pid}", json={"name": "x"}), 404) == NOT_FOUND
        again = alice.delete(f"/api/projects/{pid}", params={"confirm": "true"})
        assert expect(again, 404) == NOT_FOUND
        assert project_run_ids(alice, other["project_id"]) == {bystander}


def test_a_project_with_no_runs_is_deleted_and_gone(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    assert alice.delete(f"/api/projects/{pid}", params={"confirm": "true"}).status_code == 204
    assert expect(get_project(alice, pid), 404) == NOT_FOUND
    assert list_projects(alice) == []
