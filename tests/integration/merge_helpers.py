"""Real repositories for the merge tests, and the states a killed merge leaves behind."""

from __future__ import annotations

import os
import time
from contextlib import suppress
from pathlib import Path

from adapters import git, merges


class Killed(Exception):
    """Stands for the process dying right after it recorded the merge's start."""


def run_branch(repo: Path, tmp_path: Path, name: str, files: dict[str, str | None]) -> str:
    """A run's branch that writes (or, with None, deletes) files; its name."""
    worktree = tmp_path / f"wt-{name}"
    branch = f"runledger/{name}"
    git.add_worktree(repo, worktree, branch, "main")
    for path, content in files.items():
        if content is None:
            (worktree / path).unlink()
        else:
            (worktree / path).parent.mkdir(parents=True, exist_ok=True)
            (worktree / path).write_text(content)
    assert git.commit_all(worktree, f"run {name}")
    git.remove_worktree(repo, worktree)
    return branch


def merge(
    repo: Path,
    branch: str,
    tree: str | None = None,
    started: merges.MergeStart | None = None,
    recorded: list[merges.MergeStart] | None = None,
) -> merges.MergeOutcome:
    """merges.merge into main under the repository's lock, recording starts in a list."""
    starts = recorded if recorded is not None else []
    with merges.locked(repo) as g:
        return merges.merge(g, branch, "main", tree, started, starts.append)


def killed_after_recording(repo: Path, branch: str) -> merges.MergeStart:
    """A merge that recorded its start and died before the ref moved."""
    starts: list[merges.MergeStart] = []

    def record(start: merges.MergeStart) -> None:
        starts.append(start)
        raise Killed

    with merges.locked(repo) as g, suppress(Killed):
        merges.merge(g, branch, "main", None, None, record)
    return starts[0]


def killed_after_publishing(repo: Path, branch: str) -> merges.MergeStart:
    """A merge that moved the ref and died before it updated the checkout."""
    start = killed_after_recording(repo, branch)
    git.git(repo, "update-ref", "refs/heads/main", start.merge_commit, start.old_commit)
    return start


def stale(path: Path) -> Path:
    """Create a lock file as a git killed a while ago would have left it."""
    path.write_text("")
    then = time.time() - merges.STALE_LOCK_SECONDS - 5
    os.utime(path, (then, then))
    return path


def in_step(repo: Path) -> bool:
    """The checkout is clean, on its branch, with no merge or lock of git's left."""
    return (
        git.git(repo, "status", "--porcelain", "--untracked-files=all") == ""
        and not (repo / ".git" / "MERGE_HEAD").exists()
        and not (repo / ".git" / "index.lock").exists()
    )
