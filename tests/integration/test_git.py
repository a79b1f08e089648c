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


def run_branch(repo: Path, tmp_path: Path, name: str, content: str) -> tuple[str, str]:
    """A run's branch in its own worktree that rewrites app.py; returns (branch, tree)."""
    worktree = tmp_path / f"wt-{name}"
    branch = f"runledger/{name}"
    git.add_worktree(repo, worktree, branch, "main")
    (worktree / "app.py").write_text(content)
    assert git.commit_all(worktree, f"run {name}")
    git.remove_worktree(repo, worktree)
    return branch, git.tree_of(repo, branch)


def test_a_clean_merge_into_a_branch_not_checked_out_moves_only_the_ref(
    repo: Path, tmp_path: Path
) -> None:
    git.git(repo, "checkout", "--quiet", "-b", "elsewhere")
    branch, tree = run_branch(repo, tmp_path, "a", "one\nTWO\nthree\n")
    outcome = git.merge(repo, branch, "main", tree)
    assert outcome.commit and not outcome.conflicting_files
    assert git.git(repo, "show", "main:app.py") == "one\nTWO\nthree"
    assert (repo / "app.py").read_text() == "one\ntwo\nthree\n"  # the checkout is untouched
    assert git.merge(repo, branch, "main", tree).commit == outcome.commit  # idempotent


def test_a_merge_into_the_checked_out_branch_updates_its_working_tree(
    repo: Path, tmp_path: Path
) -> None:
    branch, tree = run_branch(repo, tmp_path, "a", "one\nTWO\nthree\n")
    outcome = git.merge(repo, branch, "main", tree)
    assert outcome.commit == git.git(repo, "rev-parse", "HEAD")
    assert (repo / "app.py").read_text() == "one\nTWO\nthree\n"
    assert git.git(repo, "status", "--porcelain") == ""


def test_two_runs_editing_the_same_line_conflict_and_leave_the_target_alone(
    repo: Path, tmp_path: Path
) -> None:
    first, first_tree = run_branch(repo, tmp_path, "a", "one\nA\nthree\n")
    second, second_tree = run_branch(repo, tmp_path, "b", "one\nB\nthree\n")
    assert git.merge(repo, first, "main", first_tree).commit
    before = git.git(repo, "rev-parse", "main")
    outcome = git.merge(repo, second, "main", second_tree)
    assert outcome.conflicting_files == ("app.py",) and outcome.commit is None
    assert git.git(repo, "rev-parse", "main") == before
    assert git.git(repo, "status", "--porcelain") == ""


def test_a_dirty_checkout_of_the_target_refuses_the_merge(repo: Path, tmp_path: Path) -> None:
    branch, tree = run_branch(repo, tmp_path, "a", "one\nTWO\nthree\n")
    (repo / "app.py").write_text("local edit\n")
    assert git.merge_refusal(repo, "main")
    outcome = git.merge(repo, branch, "main", tree)
    assert outcome.refused and outcome.commit is None
    assert (repo / "app.py").read_text() == "local edit\n"


def test_a_branch_whose_tree_changed_after_review_is_not_merged(repo: Path, tmp_path: Path) -> None:
    branch, tree = run_branch(repo, tmp_path, "a", "one\nTWO\nthree\n")
    outcome = git.merge(repo, branch, "main", "0" * 40)
    assert outcome.failed and "changed" in outcome.failed
    assert git.git(repo, "show", "main:app.py") == "one\ntwo\nthree"
    assert tree


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
