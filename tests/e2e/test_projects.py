"""The Projects API end to end: a real `runledger serve`, real git repositories, both stores.

Covers create/list/get/patch/delete, runs submitted in a project, what deleting a project does
to its runs, the checks on `repository_path` (including the operator's allowed roots and
symlinks that lead out of them), and that another user's project is a plain 404.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import git
from tests.support import ALICE, BOB, RUNNER, Server

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ACTIVE = ("pending", "in_progress", "paused", "awaiting_review", "merging")
NOT_FOUND = {"error": "not_found", "detail": "No such project."}


# -- fixtures and helpers -------------------------------------------------------------------


def make_repo(path: Path) -> Path:
    """A git repository with one commit on `main`."""
    path.mkdir(parents=True)
    git.git(path, "init", "--quiet", "--initial-branch=main")
    (path / "README").write_text("hello\n")
    git.commit_all(path, "initial")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    """Two allowed roots (a repository in each), a repository outside them, and symlinks."""
    allowed = tmp_path / "allowed"
    second = tmp_path / "second-root"
    outside = tmp_path / "outside"
    paths = {
        "allowed": allowed,
        "second": second,
        "inside_repo": make_repo(allowed / "repo"),
        "second_repo": make_repo(second / "repo"),
        "outside_repo": make_repo(outside / "repo"),
    }
    paths["escape"] = allowed / "escape"  # a symlink in an allowed root, leading outside
    paths["escape"].symlink_to(paths["outside_repo"], target_is_directory=True)
    paths["alias"] = allowed / "alias"  # a symlink in an allowed root, staying inside
    paths["alias"].symlink_to(paths["inside_repo"], target_is_directory=True)
    return paths


@pytest.fixture
def roots_server(store_url: str, tmp_path: Path, roots: dict[str, Path]) -> Iterator[Server]:
    """A server whose operator allows repositories under two roots only."""
    allowed = os.pathsep.join([str(roots["allowed"]), str(roots["second"])])
    srv = Server(store_url, tmp_path / "data", RUNLEDGER_ALLOWED_ROOTS=allowed).start()
    try:
        yield srv
    finally:
        srv.kill()


def expect(response: httpx.Response, status: int) -> Any:
    """The decoded body of a response that must have `status` (None for an empty body)."""
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else None


def expect_invalid(response: httpx.Response, field: str, *words: str) -> dict[str, Any]:
    """A 400 invalid_request whose errors name `field` and whose detail says `words`."""
    body = expect(response, 400)
    assert body["error"] == "invalid_request", body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert field in [e["field"] for e in body["errors"]], body
    said = (body["detail"] + " " + " ".join(e["message"] for e in body["errors"])).lower()
    for word in words:
        assert word in said, (word, body)
    return body


def head(client: httpx.Client) -> int:
    """The event store's head position (for read-your-writes after a command with no position)."""
    return int(expect(client.get("/api/diagnostics"), 200)["head_position"])


def caught_up(client: httpx.Client) -> dict[str, int]:
    """Query parameters that make a read include everything committed so far."""
    return {"min_position": head(client)}


def create_project(client: httpx.Client, **body: Any) -> dict[str, Any]:
    project = expect(client.post("/api/projects", json={"name": "demo", **body}), 201)
    assert isinstance(project, dict)
    return project


def get_project(client: httpx.Client, project_id: str) -> httpx.Response:
    return client.get(f"/api/projects/{project_id}", params=caught_up(client))


def list_projects(client: httpx.Client) -> list[dict[str, Any]]:
    body = expect(client.get("/api/projects", params=caught_up(client)), 200)
    return list(body["items"])


def submit(client: httpx.Client, path: str, task: str, **fields: Any) -> dict[str, Any]:
    """POST a run (to /api/runs or a project's runs); the 202 body."""
    body = expect(client.post(path, json={"task": task, **fields}), 202)
    assert body["status"] == "pending" and body["sequence"] == 1, body
    return dict(body)


def run_of(client: httpx.Client, run_id: str, position: int) -> dict[str, Any]:
    """The run read model once it includes `position`."""
    answer = client.get(f"/api/runs/{run_id}", params={"min_position": position})
    body = expect(answer, 200)
    assert int(answer.headers["x-position"]) >= position
    return dict(body)


def events_of(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    body = expect(client.get(f"/api/runs/{run_id}/events", params={"limit": 1000}), 200)
    assert len(body["events"]) < 1000
    return list(body["events"])


def project_run_ids(client: httpx.Client, project_id: str) -> set[str]:
    answer = client.get(f"/api/projects/{project_id}/runs", params=caught_up(client))
    body = expect(answer, 200)
    assert body["next_cursor"] is None
    return {run["run_id"] for run in body["items"]}


def claim(runner: httpx.Client, expected_run_id: str) -> dict[str, Any]:
    """Claim the oldest pending run (waiting at most 5 s) and check it is the one expected."""
    lease = expect(
        runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 5}), 200
    )
    assert lease["run"]["run_id"] == expected_run_id, lease
    return dict(lease)


# -- create, list, get, patch ----------------------------------------------------------------


def test_create_list_get_and_patch_a_project(server: Server, repo: Path) -> None:
    with server.client(ALICE) as alice, server.client(BOB) as bob:
        project = create_project(alice, name="demo", repository_path=str(repo))
        project_id = project["project_id"]
        assert str(uuid.UUID(project_id)) == project_id
        assert project["owner"] == "alice"
        assert project["name"] == "demo"
        assert project["repository_path"] == str(repo)
        assert project["default_branch"] == "main"
        assert project["settings"] == {}
        assert TIMESTAMP.match(project["created_at"]), project

        bare = create_project(alice, name="no repository", default_branch="develop")
        assert bare["repository_path"] is None and bare["default_branch"] == "develop"
        bobs = create_project(bob, name="bob's")

        fetched = expect(get_project(alice, project_id), 200)
        for field in ("project_id", "owner", "name", "repository_path", "default_branch"):
            assert fetched[field] == project[field], field
        assert fetched["settings"] == {} and fetched["created_at"] == project["created_at"]

        # Each user lists only their own projects, oldest first.
        mine = [p["project_id"] for p in list_projects(alice)]
        assert mine == [project_id, bare["project_id"]]
        assert [p["project_id"] for p in list_projects(bob)] == [bobs["project_id"]]

        # PATCH changes what it names and leaves the rest alone.
        renamed = expect(alice.patch(f"/api/projects/{project_id}", json={"name": "renamed"}), 200)
        assert renamed["name"] == "renamed" and renamed["default_branch"] == "main"
        changes = {"default_branch": "release/1.x", "settings": {"lint": True, "n": [1, 2]}}
        patched = expect(alice.patch(f"/api/projects/{project_id}", json=changes), 200)
        assert patched["name"] == "renamed"
        assert patched["default_branch"] == "release/1.x"
        assert patched["settings"] == {"lint": True, "n": [1, 2]}
        assert patched["repository_path"] == str(repo)
        assert patched["created_at"] == project["created_at"]

        fetched = expect(get_project(alice, project_id), 200)
        assert fetched["name"] == "renamed"
        assert fetched["default_branch"] == "release/1.x"
        assert fetched["settings"] == {"lint": True, "n": [1, 2]}
        assert fetched["repository_path"] == str(repo)
        listed = {p["project_id"]: p for p in list_projects(alice)}
        assert listed[project_id]["name"] == "renamed"


def test_bad_patches_are_400_and_change_nothing(server: Server) -> None:
    with server.client(ALICE) as alice:
        project = create_project(alice, name="demo", default_branch="main")
        path = f"/api/projects/{project['project_id']}"
        for field in ("owner", "repository_path", "project_id", "created_at", "bogus"):
            expect_invalid(alice.patch(path, json={field: "x"}), field)
        expect_invalid(alice.patch(path, json={"name": "ok", "bogus": 1}), "bogus")
        for field in ("name", "default_branch", "settings"):
            body = expect(alice.patch(path, json={field: None}), 400)
            assert body["error"] == "invalid_request", body
            assert "null" in body["detail"].lower(), body
        expect_invalid(alice.patch(path, json={"name": ""}), "name")
        expect_invalid(alice.patch(path, json={"name": "x" * 201}), "name")
        expect_invalid(alice.patch(path, json={"name": 7}), "name")
        expect_invalid(alice.patch(path, json={"default_branch": "two words"}), "default_branch")
        expect_invalid(alice.patch(path, json={"default_branch": ""}), "default_branch")
        expect_invalid(alice.patch(path, json={"settings": "on"}), "settings")
        expect_invalid(alice.patch(path, json={"settings": [1]}), "settings")
        body = expect(alice.patch(path, content=b"{not json"), 400)
        assert body["error"] == "invalid_request"

        after = expect(get_project(alice, project["project_id"]), 200)
        assert (after["name"], after["default_branch"], after["settings"]) == ("demo", "main", {})

        # A path that is not a UUID is a 400; an unknown one a 404.
        expect_invalid(alice.patch("/api/projects/not-a-uuid", json={"name": "x"}), "project_id")
        missing = alice.patch(f"/api/projects/{uuid.uuid4()}", json={"name": "x"})
        assert expect(missing, 404) == NOT_FOUND


def test_bad_names_and_branches_are_400(server: Server) -> None:
    with server.client(ALICE) as alice:
        expect_invalid(alice.post("/api/projects", json={"name": ""}), "name")
        expect_invalid(alice.post("/api/projects", json={"name": "x" * 201}), "name")
        expect_invalid(alice.post("/api/projects", json={}), "name")
        expect_invalid(alice.post("/api/projects", json={"name": 5}), "name")
        for branch in ("has space", "tab\there", "", "a:b", "x" * 201):
            answer = alice.post("/api/projects", json={"name": "p", "default_branch": branch})
            expect_invalid(answer, "default_branch")
        expect_invalid(alice.post("/api/projects", json={"name": "p", "owner": "bob"}), "owner")
        assert list_projects(alice) == []

        longest = create_project(alice, name="x" * 200, default_branch="feature/a-b_c.1")
        assert longest["name"] == "x" * 200 and longest["default_branch"] == "feature/a-b_c.1"


def test_an_idempotent_create_makes_one_project(server: Server) -> None:
    with server.client(ALICE) as alice:
        headers = {"Idempotency-Key": "create-once"}
        first = expect(alice.post("/api/projects", json={"name": "p"}, headers=headers), 201)
        again = expect(alice.post("/api/projects", json={"name": "p"}, headers=headers), 201)
        assert again == first
        assert [p["project_id"] for p in list_projects(alice)] == [first["project_id"]]


def test_project_commands_answer_with_a_position_for_read_your_writes(server: Server) -> None:
    with server.client(ALICE) as alice:
        created = expect(alice.post("/api/projects", json={"name": "p"}), 201)
        assert isinstance(created.get("position"), int), created
        assert isinstance(created.get("sequence"), int), created
        path = f"/api/projects/{created['project_id']}"
        seen = alice.get(path, params={"min_position": created["position"]})
        assert expect(seen, 200)["name"] == "p"
        patched = expect(alice.patch(path, json={"name": "q"}), 200)
        assert patched["position"] > created["position"], patched
        seen = alice.get(path, params={"min_position": patched["position"]})
        assert expect(seen, 200)["name"] == "q"


# -- repository_path -----------------------------------------------------------------------


def test_repository_path_must_be_the_top_of_an_existing_git_repository(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory\n")
    (repo / "src").mkdir()
    bare = tmp_path / "bare.git"
    git.git(tmp_path, "init", "--quiet", "--bare", str(bare))
    cases = {
        "relative": ("repo", "absolute"),
        "dot-relative": ("./repo", "absolute"),
        "missing": (str(tmp_path / "nowhere"), "exist"),
        "a file": (str(a_file), "director"),
        "not a repository": (str(plain), "git"),
        "a subdirectory of a repository": (str(repo / "src"), "git"),
        "the .git directory": (str(repo / ".git"), "git"),
        "a bare repository": (str(bare), "git"),
        "empty": ("", ""),
    }
    with server.client(ALICE) as alice:
        for case, (path, word) in cases.items():
            answer = alice.post("/api/projects", json={"name": case, "repository_path": path})
            assert answer.status_code == 400, (case, answer.text)
            expect_invalid(answer, "repository_path", word)
        expect_invalid(
            alice.post("/api/projects", json={"name": "n", "repository_path": 3}), "repository_path"
        )
        assert list_projects(alice) == []

        # The top of a repository is accepted, with or without a trailing slash.
        assert create_project(alice, repository_path=str(repo))["repository_path"] == str(repo)
        create_project(alice, repository_path=str(repo) + "/")
        assert len(list_projects(alice)) == 2


def test_repository_path_must_be_inside_an_allowed_root(
    roots_server: Server, roots: dict[str, Path]
) -> None:
    outside = roots["outside_repo"]
    refused = {
        "outside the roots": str(outside),
        "a symlink out of a root": str(roots["escape"]),
        "dot-dot out of a root": f"{roots['allowed']}/../outside/repo",
        "a root's parent": str(roots["allowed"].parent),
    }
    with roots_server.client(ALICE) as alice:
        for case, path in refused.items():
            answer = alice.post("/api/projects", json={"name": case, "repository_path": path})
            assert answer.status_code == 400, (case, answer.text)
            expect_invalid(answer, "repository_path", "allowed")
        assert list_projects(alice) == []

        # Repositories inside either root are accepted, also through a symlink that stays inside.
        for path in (roots["inside_repo"], roots["second_repo"], roots["alias"]):
            project = create_project(alice, repository_path=str(path))
            assert Path(project["repository_path"]).resolve() == path.resolve()
        # Inside a root, the usual checks still apply.
        expect_invalid(
            alice.post(
                "/api/projects",
                json={"name": "n", "repository_path": str(roots["allowed"] / "nowhere")},
            ),
            "repository_path",
        )
        assert len(list_projects(alice)) == 3


# -- runs in a project -----------------------------------------------------------------------


def test_runs_submitted_in_a_project_get_its_repository_and_branch(
    server: Server, repo: Path
) -> None:
    with server.client(ALICE) as alice:
        project = create_project(alice, repository_path=str(repo), default_branch="trunk")
        other = create_project(alice, name="other")
        pid = project["project_id"]

        by_path = submit(alice, f"/api/projects/{pid}/runs", "in the project")
        run = run_of(alice, by_path["run_id"], by_path["position"])
        assert run["project_id"] == pid
        assert run["repository_path"] == str(repo)
        assert run["originating_branch"] == "trunk"
        assert run["status"] == "pending" and run["owner"] == "alice"

        branch = submit(alice, f"/api/projects/{pid}/runs", "on a branch", originating_branch="b1")
        run = run_of(alice, branch["run_id"], branch["position"])
        assert (run["repository_path"], run["originating_branch"]) == (str(repo), "b1")

        by_body = submit(alice, "/api/runs", "via /api/runs", project_id=pid)
        run = run_of(alice, by_body["run_id"], by_body["position"])
        assert run["project_id"] == pid
        assert (run["repository_path"], run["originating_branch"]) == (str(repo), "trunk")
        by_body_branch = submit(
            alice, "/api/runs", "via /api/runs on b2", project_id=pid, originating_branch="b2"
        )
        run = run_of(alice, by_body_branch["run_id"], by_body_branch["position"])
        assert run["originating_branch"] == "b2"

        # The submitted event records the same.
        submitted = events_of(alice, by_path["run_id"])[0]
        assert submitted["type"] == "run.submitted"
        assert submitted["data"]["project_id"] == pid
        assert submitted["data"]["repository_path"] == str(repo)
        assert submitted["data"]["originating_branch"] == "trunk"

        # A changed default branch applies to runs submitted afterwards.
        expect(alice.patch(f"/api/projects/{pid}", json={"default_branch": "next"}), 200)
        later = submit(alice, f"/api/projects/{pid}/runs", "after the change")
        assert run_of(alice, later["run_id"], later["position"])["originating_branch"] == "next"

        # Runs elsewhere: another project's, and one in no project.
        elsewhere = submit(alice, f"/api/projects/{other['project_id']}/runs", "other project")
        run = run_of(alice, elsewhere["run_id"], elsewhere["position"])
        assert (run["repository_path"], run["originating_branch"]) == (None, "main")
        loose = submit(alice, "/api/runs", "no project")
        assert run_of(alice, loose["run_id"], loose["position"])["project_id"] is None

        ours = {r["run_id"] for r in (by_path, branch, by_body, by_body_branch, later)}
        assert project_run_ids(alice, pid) == ours
        assert project_run_ids(alice, other["project_id"]) == {elsewhere["run_id"]}
        same = expect(alice.get("/api/runs", params={"project_id": pid, **caught_up(alice)}), 200)
        assert {r["run_id"] for r in same["items"]} == ours
        one = alice.get(f"/api/projects/{pid}/runs", params={"limit": 2, **caught_up(alice)})
        assert len(expect(one, 200)["items"]) == 2

        # An unknown project: 400 in the body (a bad field), 404 in the path.
        unknown = str(uuid.uuid4())
        expect_invalid(
            alice.post("/api/runs", json={"task": "t", "project_id": unknown}), "project_id"
        )
        expect_invalid(
            alice.post("/api/runs", json={"task": "t", "project_id": "nope"}), "project_id"
        )
        assert expect(alice.post(f"/api/projects/{unknown}/runs", json={"task": "t"}), 404) == (
            NOT_FOUND
        )
        assert expect(alice.get(f"/api/projects/{unknown}/runs"), 404) == NOT_FOUND
        expect_invalid(alice.post("/api/projects/nope/runs", json={"task": "t"}), "project_id")
        expect_invalid(alice.get("/api/projects/nope/runs"), "project_id")

        # A bad body is a 400 and submits nothing.
        expect_invalid(alice.post(f"/api/projects/{pid}/runs", json={}), "task")
        expect_invalid(alice.post(f"/api/projects/{pid}/runs", json={"task": "   "}), "task")
        expect_invalid(
            alice.post(f"/api/projects/{pid}/runs", json={"task": "t", "project_id": pid}),
            "project_id",
        )
        expect_invalid(
            alice.post(
                f"/api/projects/{pid}/runs", json={"task": "t", "originating_branch": "a b"}
            ),
            "originating_branch",
        )
        assert project_run_ids(alice, pid) == ours


# -- delete ----------------------------------------------------------------------------------


def test_deleting_a_project_needs_confirmation(server: Server) -> None:
    with server.client(ALICE) as alice:
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


def test_deleting_a_project_cancels_its_active_runs_and_leaves_finished_ones(
    server: Server, repo: Path
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
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
        assert held["run"]["repository_path"] == str(repo)
        assert held["run"]["originating_branch"] == "main"
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
        assert answer.status_code == 204, answer.text
        assert answer.content == b""

        # Every active run got exactly one run.cancelled, appended by the deletion.
        for run_id in [claimed, paused, *pending]:
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

        # Finished runs and runs outside the project are untouched.
        for run_id, history in {**finished_history, **untouched_history}.items():
            assert events_of(alice, run_id) == history, run_id
        now = head(alice)
        assert run_of(alice, completed, now)["status"] == "completed"
        assert run_of(alice, cancelled, now)["status"] == "cancelled"
        assert run_of(alice, bystander, now)["status"] == "pending"
        assert run_of(alice, loose, now)["status"] == "pending"

        # The runner's lease on the cancelled run is void.
        late = runner.post(
            f"/api/runs/{claimed}/report",
            json={"fencing_token": held["fencing_token"], "outcome": "no_changes"},
        )
        assert expect(late, 409)["error"] == "stale_lease"
        # And nothing of the deleted project is left to claim: only the other runs.
        next_up = expect(runner.post("/api/runner/claim", json={"runner_id": "r1"}), 200)
        assert next_up["run"]["run_id"] == bystander

        # The project is gone for every endpoint.
        assert expect(get_project(alice, pid), 404) == NOT_FOUND
        assert [p["project_id"] for p in list_projects(alice)] == [other["project_id"]]
        assert expect(alice.get(runs_path), 404) == NOT_FOUND
        assert expect(alice.post(runs_path, json={"task": "too late"}), 404) == NOT_FOUND
        expect_invalid(alice.post("/api/runs", json={"task": "t", "project_id": pid}), "project_id")
        assert expect(alice.patch(f"/api/projects/{pid}", json={"name": "x"}), 404) == NOT_FOUND
        again = alice.delete(f"/api/projects/{pid}", params={"confirm": "true"})
        assert expect(again, 404) == NOT_FOUND
        assert project_run_ids(alice, other["project_id"]) == {bystander}


def test_deleting_a_project_with_no_runs(server: Server) -> None:
    with server.client(ALICE) as alice:
        pid = create_project(alice)["project_id"]
        assert alice.delete(f"/api/projects/{pid}", params={"confirm": "true"}).status_code == 204
        assert expect(get_project(alice, pid), 404) == NOT_FOUND
        assert list_projects(alice) == []


# -- ownership -------------------------------------------------------------------------------


def test_another_users_project_is_not_found(server: Server, repo: Path) -> None:
    with server.client(ALICE) as alice, server.client(BOB) as bob:
        project = create_project(alice, repository_path=str(repo))
        pid = project["project_id"]
        path = f"/api/projects/{pid}"
        run = submit(alice, f"{path}/runs", "alice's")
        missing = f"/api/projects/{uuid.uuid4()}"

        for target in (path, missing):
            assert expect(bob.get(target, params=caught_up(bob)), 404) == NOT_FOUND, target
            assert expect(bob.patch(target, json={"name": "mine"}), 404) == NOT_FOUND, target
            deleted = bob.delete(target, params={"confirm": "true"})
            assert expect(deleted, 404) == NOT_FOUND, target
            assert expect(bob.get(f"{target}/runs"), 404) == NOT_FOUND, target
            posted = bob.post(f"{target}/runs", json={"task": "sneak in"})
            assert expect(posted, 404) == NOT_FOUND, target
        sneak = bob.post("/api/runs", json={"task": "sneak in", "project_id": pid})
        expect_invalid(sneak, "project_id")
        assert expect(bob.get("/api/projects", params=caught_up(bob)), 200)["items"] == []
        bobs_runs = expect(bob.get("/api/runs", params={"project_id": pid}), 200)
        assert bobs_runs["items"] == []
        assert expect(bob.get(f"/api/runs/{run['run_id']}"), 404)["error"] == "not_found"

        # Nothing bob tried changed alice's project or its runs.
        still = expect(get_project(alice, pid), 200)
        assert (still["name"], still["owner"]) == ("demo", "alice")
        assert project_run_ids(alice, pid) == {run["run_id"]}
        assert run_of(alice, run["run_id"], head(alice))["status"] == "pending"


def test_reads_wait_boundedly_for_min_position(server: Server) -> None:
    """Reads of projects honour min_position and give up with 503 rather than hang."""
    with server.client(ALICE) as alice:
        create_project(alice)
        beyond = head(alice) + 1000
        started = time.monotonic()
        answer = alice.get("/api/projects", params={"min_position": beyond})
        assert expect(answer, 503)["error"] == "not_caught_up"
        assert time.monotonic() - started < 15
