"""The diff routes over real HTTP: missing branches are 404, odd file names work."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from adapters import git
from tests.support import ALICE, Server, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def run_on(alice: httpx.Client, repo: Path, originating_branch: str) -> str:
    """A run in a project on `repo` from `originating_branch`; its id."""
    project = alice.post("/api/projects", json={"name": "p", "repository_path": str(repo)})
    assert project.status_code == 201, project.text
    submitted = alice.post(
        f"/api/projects/{project.json()['project_id']}/runs",
        json={"task": "t", "originating_branch": originating_branch},
    )
    assert submitted.status_code == 202, submitted.text
    return str(submitted.json()["run_id"])


def give_branch(repo: Path, tmp_path: Path, run_id: str, files: dict[str, str]) -> None:
    """The run's own branch `runledger/<run_id>` off main, writing `files`."""
    worktree = tmp_path / "wt"
    git.add_worktree(repo, worktree, f"runledger/{run_id}", "main")
    for name, text in files.items():
        (worktree / name).write_text(text)
    assert git.commit_all(worktree, "run")
    git.remove_worktree(repo, worktree)


def test_files_of_a_run_whose_originating_branch_is_missing_are_404(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    with server.client(ALICE) as alice:
        run_id = run_on(alice, repo, "no-such-branch")
        give_branch(repo, tmp_path, run_id, {"a.txt": "a\n"})
        listed = alice.get(f"/api/runs/{run_id}/files")
        assert listed.status_code == 404, listed.text
        assert listed.json()["error"] == "not_found"
        diff = alice.get(f"/api/runs/{run_id}/files/a.txt")
        assert diff.status_code == 404, diff.text
        assert alice.get("/health").status_code == 200  # the same connection still serves


def test_a_file_with_an_odd_name_is_listed_plainly_and_has_a_diff(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    name = 'näme\twith "quotes".txt'
    with server.client(ALICE) as alice:
        run_id = run_on(alice, repo, "main")
        give_branch(repo, tmp_path, run_id, {name: "hello\n"})
        listed = alice.get(f"/api/runs/{run_id}/files")
        assert listed.status_code == 200, listed.text
        assert [f["path"] for f in listed.json()["files"]] == [name]
        diff = alice.get(f"/api/runs/{run_id}/files/{quote(name)}")
        assert diff.status_code == 200, diff.text
        assert "+hello" in diff.text


def test_a_file_named_star_gets_only_its_own_diff(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    with server.client(ALICE) as alice:
        run_id = run_on(alice, repo, "main")
        give_branch(repo, tmp_path, run_id, {"*": "star\n", "b.txt": "bee\n"})
        diff = alice.get(f"/api/runs/{run_id}/files/*")
        assert diff.status_code == 200, diff.text
        assert "+star" in diff.text and "+bee" not in diff.text
