"""The Projects API end to end: a real `runledger serve`, real git repositories, both stores.

Covers create/list/get/patch, the checks on `repository_path` (including the operator's
allowed roots and symlinks that lead out of them), and that another user's project is a
plain 404. Runs in a project and deleting a project are in test_project_runs.py.

The tests share one server per store (`site`, tests/e2e/conftest.py) and each speaks as users
who have done nothing on it yet (`alice`, `bob`), so what one test creates is never in
another's lists.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import git
from tests.e2e.projects_helpers import (
    NOT_FOUND,
    TIMESTAMP,
    Site,
    User,
    caught_up,
    create_project,
    expect,
    expect_invalid,
    get_project,
    head,
    list_projects,
    make_repo,
    project_run_ids,
    run_of,
    start_site,
    submit,
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on `main`."""
    return make_repo(tmp_path / "repo")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two allowed roots (a repository in each), a repository outside them, and symlinks."""
    tmp_path = tmp_path_factory.mktemp("roots")
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


@pytest.fixture(scope="module")
def roots_site(
    store_kind: str, tmp_path_factory: pytest.TempPathFactory, roots: dict[str, Path]
) -> Iterator[Site]:
    """A server whose operator allows repositories under two roots only."""
    allowed = os.pathsep.join([str(roots["allowed"]), str(roots["second"])])
    yield from start_site(store_kind, tmp_path_factory, "roots", RUNLEDGER_ALLOWED_ROOTS=allowed)


@pytest.fixture
def roots_alice(roots_site: Site, request: pytest.FixtureRequest) -> Iterator[User]:
    """A user with no projects yet on the server with allowed roots."""
    with roots_site.user(request.node.nodeid, "alice") as client:
        yield client


# -- create, list, get, patch ----------------------------------------------------------------


def test_a_created_project_has_an_id_its_owner_and_the_fields_given(
    alice: User, repo: Path
) -> None:
    project = create_project(alice, name="demo", repository_path=str(repo))
    project_id = project["project_id"]
    assert str(uuid.UUID(project_id)) == project_id
    assert project["owner"] == alice.name
    assert project["name"] == "demo"
    assert project["repository_path"] == str(repo)
    assert project["default_branch"] == "main"
    assert project["settings"] == {}
    assert TIMESTAMP.match(project["created_at"]), project


def test_a_project_needs_no_repository_and_may_default_to_another_branch(alice: User) -> None:
    bare = create_project(alice, name="no repository", default_branch="develop")
    assert bare["repository_path"] is None and bare["default_branch"] == "develop"


def test_a_project_reads_back_as_it_was_created(alice: User, repo: Path) -> None:
    project = create_project(alice, name="demo", repository_path=str(repo))
    project_id = project["project_id"]
    fetched = expect(get_project(alice, project_id), 200)
    for field in ("project_id", "owner", "name", "repository_path", "default_branch"):
        assert fetched[field] == project[field], field
    assert fetched["settings"] == {} and fetched["created_at"] == project["created_at"]


def test_each_user_lists_only_their_own_projects_oldest_first(
    alice: User, bob: User, repo: Path
) -> None:
    project_id = create_project(alice, name="demo", repository_path=str(repo))["project_id"]
    bare = create_project(alice, name="no repository", default_branch="develop")
    bobs = create_project(bob, name="bob's")
    mine = [p["project_id"] for p in list_projects(alice)]
    assert mine == [project_id, bare["project_id"]]
    assert [p["project_id"] for p in list_projects(bob)] == [bobs["project_id"]]


@pytest.fixture
def patches(alice: User, repo: Path) -> dict[str, dict[str, Any]]:
    """A project with a repository, renamed, then given another branch and settings: the
    answers to its creation (`project`) and to each patch (`renamed`, `patched`)."""
    project = create_project(alice, name="demo", repository_path=str(repo))
    path = f"/api/projects/{project['project_id']}"
    renamed = expect(alice.patch(path, json={"name": "renamed"}), 200)
    changes = {"default_branch": "release/1.x", "settings": {"lint": True, "n": [1, 2]}}
    patched = expect(alice.patch(path, json=changes), 200)
    return {"project": project, "renamed": renamed, "patched": patched}


def test_a_patch_changes_what_it_names_and_leaves_the_rest_alone(
    patches: dict[str, dict[str, Any]], repo: Path
) -> None:
    project, renamed, patched = patches["project"], patches["renamed"], patches["patched"]
    assert renamed["name"] == "renamed" and renamed["default_branch"] == "main"
    assert patched["name"] == "renamed"
    assert patched["default_branch"] == "release/1.x"
    assert patched["settings"] == {"lint": True, "n": [1, 2]}
    assert patched["repository_path"] == str(repo)
    assert patched["created_at"] == project["created_at"]


def test_a_patched_project_reads_and_lists_as_patched(
    alice: User, patches: dict[str, dict[str, Any]], repo: Path
) -> None:
    project_id = patches["project"]["project_id"]
    fetched = expect(get_project(alice, project_id), 200)
    assert fetched["name"] == "renamed"
    assert fetched["default_branch"] == "release/1.x"
    assert fetched["settings"] == {"lint": True, "n": [1, 2]}
    assert fetched["repository_path"] == str(repo)
    listed = {p["project_id"]: p for p in list_projects(alice)}
    assert listed[project_id]["name"] == "renamed"


@pytest.fixture
def demo(alice: User) -> dict[str, Any]:
    """Alice's project "demo" on branch main, with no settings."""
    return create_project(alice, name="demo", default_branch="main")


def assert_unchanged(alice: User, project: dict[str, Any]) -> None:
    """The project still has its name, branch and settings as created."""
    after = expect(get_project(alice, project["project_id"]), 200)
    assert (after["name"], after["default_branch"], after["settings"]) == ("demo", "main", {})


def test_a_patch_naming_a_field_that_cannot_change_is_400_and_changes_nothing(
    alice: User, demo: dict[str, Any]
) -> None:
    path = f"/api/projects/{demo['project_id']}"
    for field in ("owner", "repository_path", "project_id", "created_at", "bogus"):
        expect_invalid(alice.patch(path, json={field: "x"}), field)
    expect_invalid(alice.patch(path, json={"name": "ok", "bogus": 1}), "bogus")
    assert_unchanged(alice, demo)


def test_a_patch_setting_a_field_to_null_is_400_and_changes_nothing(
    alice: User, demo: dict[str, Any]
) -> None:
    path = f"/api/projects/{demo['project_id']}"
    for field in ("name", "default_branch", "settings"):
        body = expect(alice.patch(path, json={field: None}), 400)
        assert body["error"] == "invalid_request", body
        assert "null" in body["detail"].lower(), body
    assert_unchanged(alice, demo)


def test_a_patch_with_a_bad_name_branch_or_settings_is_400_and_changes_nothing(
    alice: User, demo: dict[str, Any]
) -> None:
    path = f"/api/projects/{demo['project_id']}"
    expect_invalid(alice.patch(path, json={"name": ""}), "name")
    expect_invalid(alice.patch(path, json={"name": "x" * 201}), "name")
    expect_invalid(alice.patch(path, json={"name": 7}), "name")
    expect_invalid(alice.patch(path, json={"default_branch": "two words"}), "default_branch")
    expect_invalid(alice.patch(path, json={"default_branch": ""}), "default_branch")
    expect_invalid(alice.patch(path, json={"settings": "on"}), "settings")
    expect_invalid(alice.patch(path, json={"settings": [1]}), "settings")
    assert_unchanged(alice, demo)


def test_a_patch_that_is_not_json_is_400_and_changes_nothing(
    alice: User, demo: dict[str, Any]
) -> None:
    path = f"/api/projects/{demo['project_id']}"
    body = expect(alice.patch(path, content=b"{not json"), 400)
    assert body["error"] == "invalid_request"
    assert_unchanged(alice, demo)


def test_a_patch_of_a_project_id_that_is_not_a_uuid_is_400_and_of_an_unknown_one_404(
    alice: User,
) -> None:
    expect_invalid(alice.patch("/api/projects/not-a-uuid", json={"name": "x"}), "project_id")
    missing = alice.patch(f"/api/projects/{uuid.uuid4()}", json={"name": "x"})
    assert expect(missing, 404) == NOT_FOUND


def test_a_project_with_a_missing_or_bad_name_is_400_and_not_created(alice: User) -> None:
    expect_invalid(alice.post("/api/projects", json={"name": ""}), "name")
    expect_invalid(alice.post("/api/projects", json={"name": "x" * 201}), "name")
    expect_invalid(alice.post("/api/projects", json={}), "name")
    expect_invalid(alice.post("/api/projects", json={"name": 5}), "name")
    assert list_projects(alice) == []


def test_a_project_with_a_bad_default_branch_is_400_and_not_created(alice: User) -> None:
    for branch in ("has space", "tab\there", "", "a:b", "x" * 201):
        answer = alice.post("/api/projects", json={"name": "p", "default_branch": branch})
        expect_invalid(answer, "default_branch")
    assert list_projects(alice) == []


def test_a_project_that_names_its_owner_is_400_and_not_created(alice: User) -> None:
    expect_invalid(alice.post("/api/projects", json={"name": "p", "owner": "bob"}), "owner")
    assert list_projects(alice) == []


def test_the_longest_name_and_a_branch_with_slashes_dots_and_dashes_are_accepted(
    alice: User,
) -> None:
    longest = create_project(alice, name="x" * 200, default_branch="feature/a-b_c.1")
    assert longest["name"] == "x" * 200 and longest["default_branch"] == "feature/a-b_c.1"


def test_an_idempotent_create_makes_one_project(alice: User) -> None:
    headers = {"Idempotency-Key": "create-once"}
    first = expect(alice.post("/api/projects", json={"name": "p"}, headers=headers), 201)
    again = expect(alice.post("/api/projects", json={"name": "p"}, headers=headers), 201)
    assert again == first
    assert [p["project_id"] for p in list_projects(alice)] == [first["project_id"]]


def test_a_create_answers_with_a_position_that_a_read_can_wait_for(alice: User) -> None:
    created = expect(alice.post("/api/projects", json={"name": "p"}), 201)
    assert isinstance(created.get("position"), int), created
    assert isinstance(created.get("sequence"), int), created
    path = f"/api/projects/{created['project_id']}"
    seen = alice.get(path, params={"min_position": created["position"]})
    assert expect(seen, 200)["name"] == "p"


def test_a_patch_answers_with_a_later_position_that_a_read_can_wait_for(alice: User) -> None:
    created = expect(alice.post("/api/projects", json={"name": "p"}), 201)
    path = f"/api/projects/{created['project_id']}"
    patched = expect(alice.patch(path, json={"name": "q"}), 200)
    assert patched["position"] > created["position"], patched
    seen = alice.get(path, params={"min_position": patched["position"]})
    assert expect(seen, 200)["name"] == "q"


# -- repository_path -----------------------------------------------------------------------


def test_a_repository_path_that_is_not_the_top_of_an_existing_git_repository_is_400(
    alice: User, repo: Path, tmp_path: Path
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
    for case, (path, word) in cases.items():
        answer = alice.post("/api/projects", json={"name": case, "repository_path": path})
        assert answer.status_code == 400, (case, answer.text)
        expect_invalid(answer, "repository_path", word)
    expect_invalid(
        alice.post("/api/projects", json={"name": "n", "repository_path": 3}), "repository_path"
    )
    assert list_projects(alice) == []


def test_the_top_of_a_repository_is_accepted_with_or_without_a_trailing_slash(
    alice: User, repo: Path
) -> None:
    assert create_project(alice, repository_path=str(repo))["repository_path"] == str(repo)
    create_project(alice, repository_path=str(repo) + "/")
    assert len(list_projects(alice)) == 2


def test_a_repository_path_outside_the_allowed_roots_is_400(
    roots_alice: User, roots: dict[str, Path]
) -> None:
    alice = roots_alice
    outside = roots["outside_repo"]
    refused = {
        "outside the roots": str(outside),
        "a symlink out of a root": str(roots["escape"]),
        "dot-dot out of a root": f"{roots['allowed']}/../outside/repo",
        "a root's parent": str(roots["allowed"].parent),
    }
    for case, path in refused.items():
        answer = alice.post("/api/projects", json={"name": case, "repository_path": path})
        assert answer.status_code == 400, (case, answer.text)
        expect_invalid(answer, "repository_path", "allowed")
    assert list_projects(alice) == []


ACCEPTED_IN_ROOTS = ("inside_repo", "second_repo", "alias")


def test_repositories_in_either_allowed_root_are_accepted_also_through_a_symlink_staying_in(
    roots_alice: User, roots: dict[str, Path]
) -> None:
    alice = roots_alice
    for path in (roots[name] for name in ACCEPTED_IN_ROOTS):
        project = create_project(alice, repository_path=str(path))
        assert Path(project["repository_path"]).resolve() == path.resolve()


def test_inside_an_allowed_root_the_usual_checks_on_a_repository_path_still_apply(
    roots_alice: User, roots: dict[str, Path]
) -> None:
    alice = roots_alice
    for name in ACCEPTED_IN_ROOTS:
        create_project(alice, repository_path=str(roots[name]))
    expect_invalid(
        alice.post(
            "/api/projects",
            json={"name": "n", "repository_path": str(roots["allowed"] / "nowhere")},
        ),
        "repository_path",
    )
    assert len(list_projects(alice)) == 3


# -- ownership -------------------------------------------------------------------------------


@pytest.fixture
def alices(alice: User, repo: Path) -> dict[str, Any]:
    """Alice's project "demo" with a repository, and a run in it (`pid`, `path`, `run`)."""
    project = create_project(alice, repository_path=str(repo))
    pid = project["project_id"]
    path = f"/api/projects/{pid}"
    run = submit(alice, f"{path}/runs", "alice's")
    return {"pid": pid, "path": path, "run": run}


def bob_tries(bob: User, target: str) -> dict[str, httpx.Response]:
    """Bob reads, patches, deletes, lists the runs of and submits a run to a project."""
    return {
        "get": bob.get(target, params=caught_up(bob)),
        "patch": bob.patch(target, json={"name": "mine"}),
        "delete": bob.delete(target, params={"confirm": "true"}),
        "runs": bob.get(f"{target}/runs"),
        "submit": bob.post(f"{target}/runs", json={"task": "sneak in"}),
    }


def test_another_users_project_is_a_plain_404_like_a_missing_one_at_every_endpoint(
    bob: User, alices: dict[str, Any]
) -> None:
    missing = f"/api/projects/{uuid.uuid4()}"
    for target in (alices["path"], missing):
        tried = bob_tries(bob, target)
        assert expect(tried["get"], 404) == NOT_FOUND, target
        assert expect(tried["patch"], 404) == NOT_FOUND, target
        deleted = tried["delete"]
        assert expect(deleted, 404) == NOT_FOUND, target
        assert expect(tried["runs"], 404) == NOT_FOUND, target
        posted = tried["submit"]
        assert expect(posted, 404) == NOT_FOUND, target


def test_a_run_naming_another_users_project_is_400(bob: User, alices: dict[str, Any]) -> None:
    pid = alices["pid"]
    sneak = bob.post("/api/runs", json={"task": "sneak in", "project_id": pid})
    expect_invalid(sneak, "project_id")


def test_another_users_projects_and_their_runs_are_neither_listed_nor_shown(
    bob: User, alices: dict[str, Any]
) -> None:
    pid, run = alices["pid"], alices["run"]
    assert expect(bob.get("/api/projects", params=caught_up(bob)), 200)["items"] == []
    bobs_runs = expect(bob.get("/api/runs", params={"project_id": pid}), 200)
    assert bobs_runs["items"] == []
    assert expect(bob.get(f"/api/runs/{run['run_id']}"), 404)["error"] == "not_found"


def test_nothing_another_user_tries_changes_the_project_or_its_runs(
    alice: User, bob: User, alices: dict[str, Any]
) -> None:
    pid, run = alices["pid"], alices["run"]
    bob_tries(bob, alices["path"])
    bob.post("/api/runs", json={"task": "sneak in", "project_id": pid})
    still = expect(get_project(alice, pid), 200)
    assert (still["name"], still["owner"]) == ("demo", alice.name)
    assert project_run_ids(alice, pid) == {run["run_id"]}
    assert run_of(alice, run["run_id"], head(alice))["status"] == "pending"


def test_reads_wait_boundedly_for_min_position(alice: User) -> None:
    """Reads of projects honour min_position and give up with 503 rather than hang."""
    create_project(alice)
    beyond = head(alice) + 1000
    started = time.monotonic()
    answer = alice.get("/api/projects", params={"min_position": beyond})
    assert expect(answer, 503)["error"] == "not_caught_up"
    assert time.monotonic() - started < 15
