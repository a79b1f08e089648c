"""adapters/merges.py against real git repositories: the merge, and its finish after a crash."""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

import pytest

from adapters import git, merges
from tests.integration.merge_helpers import (
    in_step,
    killed_after_publishing,
    killed_after_recording,
    merge,
    run_branch,
    stale,
)
from tests.support import make_repo

SHOUT = {"app.py": "one\nTWO\nthree\n", "docs/new.txt": "new\n"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def test_a_clean_merge_into_a_branch_not_checked_out_moves_only_the_ref(
    repo: Path, tmp_path: Path
) -> None:
    git.git(repo, "checkout", "--quiet", "-b", "elsewhere")
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    outcome = merge(repo, branch, git.tree_of(repo, branch))
    assert outcome.commit and not outcome.conflicting_files
    assert git.git(repo, "show", "main:app.py") == "one\nTWO\nthree"
    assert (repo / "app.py").read_text() == "one\ntwo\nthree\n"  # the checkout is untouched
    assert merge(repo, branch).commit == outcome.commit  # idempotent


def test_a_merge_into_the_checked_out_branch_updates_its_working_tree(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    outcome = merge(repo, branch, git.tree_of(repo, branch))
    assert outcome.commit == git.git(repo, "rev-parse", "HEAD")
    assert (repo / "app.py").read_text() == "one\nTWO\nthree\n"
    assert (repo / "docs" / "new.txt").read_text() == "new\n"
    assert in_step(repo)


def test_the_merge_is_recorded_before_its_target_moves(repo: Path, tmp_path: Path) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    old = git.git(repo, "rev-parse", "main")
    seen: list[str] = []

    def record(start: merges.MergeStart) -> None:
        seen.append(git.git(repo, "rev-parse", "main"))
        seen.append((repo / "app.py").read_text())

    with merges.locked(repo) as g:
        outcome = merges.merge(g, branch, "main", None, None, record)
    assert seen == [old, "one\ntwo\nthree\n"]
    assert outcome.commit and outcome.commit != old


def test_a_merge_that_cannot_be_recorded_leaves_the_target_and_its_checkout_alone(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    old = git.git(repo, "rev-parse", "main")
    start = killed_after_recording(repo, branch)
    assert (start.target, start.old_commit) == ("main", old)
    assert start.tip == git.git(repo, "rev-parse", branch)
    assert git.git(repo, "rev-parse", "main") == old
    assert in_step(repo) and (repo / "app.py").read_text() == "one\ntwo\nthree\n"


def test_two_runs_editing_the_same_line_conflict_and_leave_the_target_alone(
    repo: Path, tmp_path: Path
) -> None:
    first = run_branch(repo, tmp_path, "a", {"app.py": "one\nA\nthree\n"})
    second = run_branch(repo, tmp_path, "b", {"app.py": "one\nB\nthree\n"})
    assert merge(repo, first).commit
    before = git.git(repo, "rev-parse", "main")
    recorded: list[merges.MergeStart] = []
    outcome = merge(repo, second, recorded=recorded)
    assert outcome.conflicting_files == ("app.py",) and outcome.commit is None
    assert git.git(repo, "rev-parse", "main") == before and recorded == []
    assert in_step(repo)


def test_a_dirty_checkout_of_the_target_refuses_the_merge(repo: Path, tmp_path: Path) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    (repo / "app.py").write_text("local edit\n")
    assert merges.merge_refusal(repo, "main")
    outcome = merge(repo, branch)
    assert outcome.refused and outcome.commit is None
    assert (repo / "app.py").read_text() == "local edit\n"


def test_a_branch_whose_tree_changed_after_review_is_not_merged(repo: Path, tmp_path: Path) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    outcome = merge(repo, branch, "0" * 40)
    assert outcome.failed and "changed" in outcome.failed
    assert git.git(repo, "show", "main:app.py") == "one\ntwo\nthree"


def test_a_merge_killed_before_its_ref_moved_is_done_again(repo: Path, tmp_path: Path) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    start = killed_after_recording(repo, branch)
    recorded: list[merges.MergeStart] = []
    outcome = merge(repo, branch, started=start, recorded=recorded)
    assert outcome.commit == git.git(repo, "rev-parse", "main")
    assert [r.old_commit for r in recorded] == [start.old_commit]  # recorded again, then moved
    assert (repo / "app.py").read_text() == "one\nTWO\nthree\n" and in_step(repo)


def test_a_merge_killed_after_its_ref_moved_brings_the_checkout_in_step(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", {**SHOUT, "app.py": None})
    start = killed_after_publishing(repo, branch)
    assert git.git(repo, "status", "--porcelain")  # HEAD moved, the index did not
    recorded: list[merges.MergeStart] = []
    outcome = merge(repo, branch, started=start, recorded=recorded)
    assert outcome.commit == start.merge_commit and recorded == []
    assert not (repo / "app.py").exists() and (repo / "docs" / "new.txt").exists()
    assert in_step(repo)


def test_a_merge_killed_halfway_through_the_checkout_update_is_finished(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    start = killed_after_publishing(repo, branch)
    (repo / "app.py").write_text(SHOUT["app.py"])  # read-tree wrote one file, then died
    stale(repo / ".git" / "index.lock")
    outcome = merge(repo, branch, started=start)
    assert outcome.commit == start.merge_commit
    assert (repo / "docs" / "new.txt").read_text() == "new\n" and in_step(repo)


def test_a_merge_killed_while_git_rewrote_a_file_brings_that_file_back(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    start = killed_after_publishing(repo, branch)
    (repo / "app.py").unlink()  # git removes the old file, then dies before writing the new
    stale(repo / ".git" / "index.lock")
    outcome = merge(repo, branch, started=start)
    assert outcome.commit == start.merge_commit
    assert (repo / "app.py").read_text() == "one\nTWO\nthree\n" and in_step(repo)


def test_a_file_git_was_killed_halfway_through_writing_is_written_again(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    start = killed_after_publishing(repo, branch)
    (repo / "app.py").write_text("one\nTW")  # the first bytes of the new version
    outcome = merge(repo, branch, started=start)
    assert outcome.commit == start.merge_commit
    assert (repo / "app.py").read_text() == "one\nTWO\nthree\n" and in_step(repo)


def test_lock_files_left_by_a_killed_update_ref_are_removed(repo: Path, tmp_path: Path) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    start = killed_after_recording(repo, branch)
    locks = [stale(repo / ".git" / "refs" / "heads" / "main.lock"), stale(repo / ".git/HEAD.lock")]
    outcome = merge(repo, branch, started=start)
    assert outcome.commit == git.git(repo, "rev-parse", "main")
    assert not any(lock.exists() for lock in locks) and in_step(repo)


def test_a_fresh_lock_file_postpones_the_merge_and_changes_nothing(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    old = git.git(repo, "rev-parse", "main")
    (repo / ".git" / "index.lock").write_text("")  # the user's own git, at work right now
    with pytest.raises(merges.GitBusy):
        merge(repo, branch)
    assert git.git(repo, "rev-parse", "main") == old
    assert (repo / ".git" / "index.lock").exists()


def test_finishing_a_merge_never_overwrites_a_file_someone_edited_in_the_checkout(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    start = killed_after_publishing(repo, branch)
    (repo / "app.py").write_text("the user's edit\n")
    outcome = merge(repo, branch, started=start)
    assert outcome.commit == start.merge_commit  # the branch holds the merge
    assert (repo / "app.py").read_text() == "the user's edit\n"


def test_a_recorded_merge_whose_target_moved_elsewhere_is_merged_again(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    start = killed_after_recording(repo, branch)
    (repo / "other.txt").write_text("pushed\n")
    git.commit_all(repo, "someone else's commit")
    outcome = merge(repo, branch, started=start)
    assert outcome.commit and outcome.commit != start.merge_commit
    assert git.git(repo, "show", "main:other.txt") == "pushed"
    assert git.git(repo, "show", "main:app.py") == "one\nTWO\nthree" and in_step(repo)


def test_an_older_runledgers_interrupted_git_merge_is_aborted(repo: Path, tmp_path: Path) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    later = run_branch(repo, tmp_path, "b", {"b.txt": "b\n"})
    message = f"Merge {branch} into main (runledger)"
    git.git(repo, "merge", "--no-ff", "--no-commit", "-m", message, branch)
    assert (repo / ".git" / "MERGE_HEAD").exists()
    assert merges.merge_refusal(repo, "main") is None
    assert in_step(repo)
    assert merge(repo, later).commit and in_step(repo)


def test_someone_elses_unfinished_git_merge_still_refuses_the_merge(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    later = run_branch(repo, tmp_path, "b", {"b.txt": "b\n"})
    git.git(repo, "merge", "--no-ff", "--no-commit", "-m", "my own merge", branch)
    assert merges.merge_refusal(repo, "main")
    assert merge(repo, later).refused
    assert (repo / ".git" / "MERGE_HEAD").exists()


def test_a_git_started_under_the_merge_lock_holds_it_until_it_exits(repo: Path) -> None:
    with merges.locked(repo) as g:  # a git whose child lives on, as a killed server's would
        sleeper = int(g.git("-c", "alias.nap=!sleep 60 >/dev/null 2>&1 & echo $!", "nap"))
    try:
        lock = repo / ".git" / "runledger-merge.lock"
        with lock.open("a") as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.kill(sleeper, signal.SIGKILL)


def test_a_path_that_is_no_repository_refuses_nothing_and_leaves_the_merge_to_say_why(
    tmp_path: Path,
) -> None:
    assert merges.merge_refusal(tmp_path / "gone", "main") is None


def test_finishing_a_merge_leaves_a_checkout_with_someone_elses_staged_changes_alone(
    repo: Path, tmp_path: Path
) -> None:
    branch = run_branch(repo, tmp_path, "a", SHOUT)
    start = killed_after_publishing(repo, branch)
    (repo / "mine.txt").write_text("mine\n")
    git.git(repo, "add", "mine.txt")
    outcome = merge(repo, branch, started=start)
    assert outcome.commit == start.merge_commit
    assert "A  mine.txt" in git.git(repo, "status", "--porcelain").splitlines()
    assert (repo / "app.py").read_text() == "one\ntwo\nthree\n"  # not brought along


def test_a_symlink_the_merge_changes_is_brought_along_after_a_crash(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "link").symlink_to("app.py")
    git.commit_all(repo, "a link")
    worktree = tmp_path / "wt-link"
    git.add_worktree(repo, worktree, "runledger/link", "main")
    (worktree / "link").unlink()
    (worktree / "link").symlink_to("docs")
    git.commit_all(worktree, "retarget the link")
    git.remove_worktree(repo, worktree)
    start = killed_after_publishing(repo, "runledger/link")
    outcome = merge(repo, "runledger/link", started=start)
    assert outcome.commit == start.merge_commit
    assert os.readlink(repo / "link") == "docs" and in_step(repo)
