"""adapters/git.py's diff readers on real repositories: odd file names, missing revisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import git
from tests.support import make_repo

ODD_NAMES = ["café.txt", "tab\there.txt", 'quote".txt', "*", "back\\slash.txt"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def branch_with(repo: Path, tmp_path: Path, files: dict[str, str]) -> str:
    """A branch `runledger/x` off main that writes `files`; its full ref name."""
    worktree = tmp_path / "wt"
    git.add_worktree(repo, worktree, "runledger/x", "main")
    for name, text in files.items():
        (worktree / name).write_text(text)
    assert git.commit_all(worktree, "run x")
    git.remove_worktree(repo, worktree)
    return "refs/heads/runledger/x"


def test_odd_file_names_are_listed_as_they_are_not_quoted(repo: Path, tmp_path: Path) -> None:
    branch = branch_with(repo, tmp_path, {name: "a\n" for name in ODD_NAMES})
    files = git.changed_files(repo, "refs/heads/main", branch)
    assert sorted(f.path for f in files) == sorted(ODD_NAMES)
    assert all(f.status == "added" and f.added == 1 for f in files)


@pytest.mark.parametrize("name", ODD_NAMES)
def test_the_diff_of_an_odd_file_name_is_that_files_diff(
    repo: Path, tmp_path: Path, name: str
) -> None:
    branch = branch_with(repo, tmp_path, {name: "mine\n", "other.txt": "not mine\n"})
    diff = git.file_diff(repo, "refs/heads/main", branch, name)
    assert "+mine" in diff
    assert "not mine" not in diff


def test_a_star_is_a_file_name_not_a_pattern(repo: Path, tmp_path: Path) -> None:
    branch = branch_with(repo, tmp_path, {"*": "star\n", "b.txt": "bee\n"})
    diff = git.file_diff(repo, "refs/heads/main", branch, "*")
    assert "+star" in diff and "+bee" not in diff


def test_a_missing_base_is_a_missing_revision(repo: Path, tmp_path: Path) -> None:
    branch = branch_with(repo, tmp_path, {"a.txt": "a\n"})
    with pytest.raises(git.MissingRevision, match="gone"):
        git.changed_files(repo, "refs/heads/gone", branch)


def test_a_missing_branch_is_a_missing_revision(repo: Path) -> None:
    with pytest.raises(git.MissingRevision):
        git.file_diff(repo, "refs/heads/main", "refs/heads/runledger/none", "app.py")


def test_a_base_that_looks_like_an_option_is_a_missing_revision(repo: Path, tmp_path: Path) -> None:
    branch = branch_with(repo, tmp_path, {"a.txt": "a\n"})
    with pytest.raises(git.MissingRevision):
        git.changed_files(repo, "--output=/tmp/x", branch)


def test_a_revision_with_a_nul_character_is_a_missing_revision(repo: Path) -> None:
    with pytest.raises(git.MissingRevision):
        git.changed_files(repo, "refs/heads/main\x00x", "refs/heads/main")


def test_a_branch_sharing_no_history_with_its_base_is_a_missing_revision(repo: Path) -> None:
    git.git(repo, "checkout", "--quiet", "--orphan", "lonely")
    git.commit_all(repo, "unrelated")
    git.git(repo, "checkout", "--quiet", "main")
    with pytest.raises(git.MissingRevision, match="no history"):
        git.changed_files(repo, "refs/heads/main", "refs/heads/lonely")
