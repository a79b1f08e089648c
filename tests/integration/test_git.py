"""adapters/git.py against real git repositories made in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters import git
from tests.support import make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def test_changed_files_and_diff_describe_the_branch(repo: Path, tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    git.add_worktree(repo, worktree, "runledger/x", "main")
    (worktree / "app.py").write_text("one\nTWO\nthree\nfour\n")
    (worktree / "new.txt").write_text("hello\n")
    git.commit_all(worktree, "x")
    files = {f.path: f for f in git.changed_files(repo, "main", "runledger/x")}
    assert files["app.py"].status == "modified"
    assert (files["app.py"].added, files["app.py"].removed) == (2, 1)
    assert files["new.txt"].status == "added" and files["new.txt"].added == 1
    assert "+TWO" in git.file_diff(repo, "main", "runledger/x", "app.py")


@pytest.mark.parametrize(
    ("make_path", "reason"),
    [
        (lambda tmp, repo: "relative/path", "absolute"),
        (lambda tmp, repo: str(tmp / "missing"), "does not exist"),
        (lambda tmp, repo: str(tmp), "not the top of a git repository"),
        (lambda tmp, repo: str(repo / "app.py"), "not a directory"),
    ],
)
def test_bad_repository_paths_are_explained(repo: Path, tmp_path: Path, make_path, reason) -> None:
    error = git.repository_error(make_path(tmp_path, repo), [])
    assert error is not None and reason in error


def test_allowed_roots_are_checked_after_resolving_symlinks(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(repo, root / "escape")
    assert git.repository_error(str(repo), [str(repo.parent)]) is None
    error = git.repository_error(str(root / "escape"), [str(root)])
    assert error is not None and "outside the allowed roots" in error


def test_the_worktree_listing_names_each_branch_checked_out_and_where(
    repo: Path, tmp_path: Path
) -> None:
    git.add_worktree(repo, tmp_path / "wt", "runledger/x", "main")
    git.git(repo, "worktree", "add", "--detach", str(tmp_path / "detached"), "main")

    listing = git.worktree_branches(git.git(repo, "worktree", "list", "--porcelain"))

    assert [(Path(path).resolve(), ref) for path, ref in listing] == [
        (repo.resolve(), "refs/heads/main"),
        ((tmp_path / "wt").resolve(), "refs/heads/runledger/x"),
    ]
