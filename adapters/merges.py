"""The real merge: computed in the object store, recorded, then published by moving one ref.

A merge never runs `git merge` in anyone's checkout. `merge-tree --write-tree` and
`commit-tree` make the merge commit; the caller records it (`merge.started`) before
anything visible changes; `update-ref <ref> <new> <old>` publishes it only if the target
still points where it did; a checkout of the target is then brought from the old tree to
the new with a two-way `read-tree`, which writes its index atomically. A crash at any
point leaves either the target untouched (redo the merge) or the ref moved and the
checkout behind (finish it), and `merge()` given the recorded start does either.

Every git this module starts inherits the repository's merge lock, so while a process
holds that lock no git of an earlier, killed merge is still running: a git lock file
found then (older than a moment, in case the user's own git just took it) is stale.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from adapters import git
from adapters.git import GIT_ENV, GitError, branch_exists

log = logging.getLogger("runledger.merges")
STALE_LOCK_SECONDS = 2.0  # a git lock file this old, with no merge of ours alive, is stale
ZERO = frozenset({"0" * 40, "0" * 64})
_repo_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class GitBusy(GitError):
    """Someone else moved the branch or holds a lock: try again later."""


@dataclass(frozen=True)
class MergeOutcome:
    """What a merge did: a commit, or the files that conflicted, or why it was refused."""

    commit: str | None = None
    conflicting_files: tuple[str, ...] = ()
    refused: str | None = None  # a reason the run should stay in review (dirty checkout)
    failed: str | None = None  # a reason the merge failed for good (tree changed, …)


@dataclass(frozen=True)
class MergeStart:
    """A merge about to be published: `target` moves from `old_commit` to `merge_commit`."""

    target: str
    old_commit: str
    tip: str
    merge_commit: str


class Locked:
    """A repository while this process holds its merge lock; every git run through it
    inherits the lock, so none outlives it unnoticed."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path, self.lock_fd = path, lock_fd

    def run(
        self, *args: str, cwd: str | Path | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run git in the repository (or in one of its worktrees); never raises on failure."""
        return git.run(cwd or self.path, *args, input=input, pass_fds=(self.lock_fd,))

    def git(self, *args: str, cwd: str | Path | None = None, input: str | None = None) -> str:
        """Run git; its stdout without the final newline (GitError if it fails)."""
        return git.output(self.run(*args, cwd=cwd, input=input), args)

    def git_dir(self, cwd: str | Path | None = None, common: bool = False) -> Path:
        """The (common) git directory of the repository or of one of its worktrees."""
        which = "--git-common-dir" if common else "--absolute-git-dir"
        found = Path(self.git("rev-parse", which, cwd=cwd))
        return found if found.is_absolute() else Path(cwd or self.path) / found


@contextmanager
def locked(repo: str | Path) -> Iterator[Locked]:
    """One merge at a time per repository: across threads, and across processes (a file
    lock in the repository's common git directory, inherited by the gits we start)."""
    path = Path(repo)
    key = str(path.resolve())
    with _locks_guard:
        lock = _repo_locks.setdefault(key, threading.Lock())
    probe = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--git-common-dir"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        raise GitError(f"{repo} is not a git repository: {probe.stderr.strip()[:300]}")
    common = Path(probe.stdout.strip())
    common = common if common.is_absolute() else path / common
    # Closing the file (never LOCK_UN, which would release it for the gits that share
    # it) lets the lock go once no git started under it is still alive.
    with lock, (common / "runledger-merge.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield Locked(path, handle.fileno())


def merge_refusal(repo: str | Path, target: str) -> str | None:
    """Why a merge into `target` cannot happen now (its checkout is dirty), or None; an
    older runledger's interrupted `git merge` found there is aborted first."""
    try:
        with locked(repo) as g:
            checkout = checkout_of(g, target) if branch_exists(repo, target) else None
            if checkout is None:
                return None
            with suppress(GitError):  # then the checkout is dirty, and says so below
                abort_legacy_merge(g, checkout)
            return _refusal(g, target, checkout)
    except GitError:
        return None  # not a repository (any more): the merge itself will say so


def merge(
    g: Locked,
    branch: str,
    target: str,
    expected_tree: str | None,
    started: MergeStart | None,
    record: Callable[[MergeStart], None],
) -> MergeOutcome:
    """Merge `branch` into `target`, or finish the merge `started` (recorded before a
    crash); `record` is called before any ref moves. Idempotent once merged."""
    if not branch_exists(g.path, target):
        return MergeOutcome(failed=f"The target branch {target} does not exist.")
    checkout = checkout_of(g, target)
    if checkout:
        abort_legacy_merge(g, checkout)
    if started is not None and started.target == target:
        clear_stale_locks(g, target, checkout)  # what the gits of the killed merge left
        finished = _resume(g, started, checkout)
        if finished is not None:
            return finished
    planned = _plan(g, branch, target, expected_tree, checkout)
    if isinstance(planned, MergeOutcome):
        return planned
    record(planned)
    moved = g.run("update-ref", f"refs/heads/{target}", planned.merge_commit, planned.old_commit)
    if moved.returncode != 0:  # the branch moved under us (a push): merge again later
        raise GitBusy(f"{target} moved during the merge: {moved.stderr.strip()[:300]}")
    _bring_along(g, checkout, planned)
    return MergeOutcome(commit=planned.merge_commit)


def _plan(
    g: Locked, branch: str, target: str, expected_tree: str | None, checkout: str | None
) -> MergeStart | MergeOutcome:
    """The merge commit, made in the object store; or why there is nothing to publish."""
    if not branch_exists(g.path, branch):
        return MergeOutcome(failed=f"The run's branch {branch} no longer exists.")
    if expected_tree is not None and g.git("rev-parse", f"{branch}^{{tree}}") != expected_tree:
        return MergeOutcome(failed="The branch changed after it was reviewed.")
    head = g.git("rev-parse", f"refs/heads/{target}")
    tip = g.git("rev-parse", f"refs/heads/{branch}")
    if g.run("merge-base", "--is-ancestor", tip, head).returncode == 0:
        return MergeOutcome(commit=head)  # merged before
    refusal = _refusal(g, target, checkout)
    if refusal:
        return MergeOutcome(refused=refusal)
    clear_stale_locks(g, target, checkout)  # and wait for fresh ones, before anything moves
    probe = g.run("merge-tree", "--write-tree", "--name-only", "--no-messages", head, tip)
    if probe.returncode == 1:
        files = tuple(f for f in probe.stdout.splitlines()[1:] if f)
        return MergeOutcome(conflicting_files=files)
    if probe.returncode != 0:
        raise GitError(f"git merge-tree failed: {probe.stderr.strip()[:500]}")
    message = f"Merge {branch} into {target} (runledger)"
    tree = probe.stdout.splitlines()[0]
    commit = g.git("commit-tree", tree, "-p", head, "-p", tip, "-m", message)
    return MergeStart(target, head, tip, commit)


def _resume(g: Locked, started: MergeStart, checkout: str | None) -> MergeOutcome | None:
    """Finish a recorded merge whose ref moved; None when it must be done again."""
    head = g.git("rev-parse", f"refs/heads/{started.target}")
    if head == started.merge_commit:
        _bring_along(g, checkout, started)
        return MergeOutcome(commit=head)
    if g.run("merge-base", "--is-ancestor", started.merge_commit, head).returncode == 0:
        return MergeOutcome(commit=started.merge_commit)  # published, and built upon since
    return None  # never published (the ref is where it was, or elsewhere): merge again


def _bring_along(g: Locked, checkout: str | None, start: MergeStart) -> None:
    """Bring the target's checkout (if any) to the published merge; GitBusy if git cannot
    now, so the merge is tried again (as a resume) rather than failed."""
    if checkout is None:
        return
    try:
        bring_checkout(g, checkout, start.old_commit, start.merge_commit)
    except GitError as exc:
        raise GitBusy(f"{start.target} is merged; its checkout is not yet: {exc}") from exc


def published(repo: str | Path, started: dict[str, str]) -> bool:
    """True if the recorded merge commit is on its target branch (read without the lock)."""
    found = subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "merge-base",
            "--is-ancestor",
            started["merge_commit"],
            f"refs/heads/{started['target']}",
        ],
        capture_output=True,
        timeout=30,
    )
    return found.returncode == 0


def _refusal(g: Locked, target: str, checkout: str | None) -> str | None:
    if checkout and g.git("status", "--porcelain", "--untracked-files=no", cwd=checkout):
        return f"The branch {target} is checked out at {checkout} with uncommitted changes."
    return None


def checkout_of(g: Locked, branch: str) -> str | None:
    """The working tree that has `branch` checked out, if any."""
    listing = g.git("worktree", "list", "--porcelain")
    ref = f"refs/heads/{branch}"
    return next((path for path, head in git.worktree_branches(listing) if head == ref), None)


def clear_stale_locks(g: Locked, target: str, checkout: str | None) -> None:
    """Remove the lock files a killed git of ours can leave on the target's ref and its
    checkout's index; GitBusy if one is fresh (perhaps the user's own git, at work)."""
    common = g.git_dir(common=True)
    candidates = [common / "refs" / "heads" / f"{target}.lock", g.git_dir() / "HEAD.lock"]
    if checkout:
        candidates += [g.git_dir(checkout) / "index.lock", g.git_dir(checkout) / "HEAD.lock"]
    for lock in candidates:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            continue
        if age < STALE_LOCK_SECONDS:
            raise GitBusy(f"{lock} is held by a running git; trying again shortly.")
        log.warning("removing %s, left by a git that was killed", lock)
        lock.unlink(missing_ok=True)


def abort_legacy_merge(g: Locked, checkout: str) -> None:
    """Abort a `git merge` that an older runledger started in the checkout and a crash
    interrupted (its MERGE_HEAD blocked every later merge); anyone else's is left alone."""
    git_dir = g.git_dir(checkout)
    if not (git_dir / "MERGE_HEAD").exists():
        return
    try:
        message = (git_dir / "MERGE_MSG").read_text().splitlines()[0]
    except (OSError, IndexError):
        return
    if not (message.startswith("Merge ") and message.endswith("(runledger)")):
        return
    log.warning("aborting an interrupted runledger merge in %s", checkout)
    aborted = g.run("merge", "--abort", cwd=checkout)
    if aborted.returncode != 0:
        raise GitError(f"git merge --abort failed: {aborted.stderr.strip()[:300]}")


def bring_checkout(g: Locked, checkout: str, old: str, new: str) -> None:
    """Bring a checkout of the target from `old` to `new` (its ref already moved), also
    after a crash halfway; what someone else changed there is left alone."""
    index = g.run("write-tree", cwd=checkout)
    if index.returncode == 0 and index.stdout.strip() == g.git("rev-parse", f"{new}^{{tree}}"):
        return  # the index is written last: the files are in step already
    if index.returncode != 0 or index.stdout.strip() != g.git("rev-parse", f"{old}^{{tree}}"):
        log.warning("%s holds staged changes; leaving it behind its branch", checkout)
        return
    edited = local_edits(g, checkout, old, new)
    if edited:
        log.warning("%s has local edits (%s); leaving it behind its branch", checkout, edited[0])
        return
    # Every file the merge changes is either its old or its new version (a crash halfway
    # through an update leaves both kinds): a two-way reset takes them all to `new`.
    g.git("read-tree", "--reset", "-u", old, new, cwd=checkout)
    g.run("update-index", "-q", "--refresh", cwd=checkout)


def local_edits(g: Locked, checkout: str, old: str, new: str) -> list[str]:
    """The files the merge changes whose content in the checkout is neither their old nor
    their new version (someone edited them)."""
    fields = g.git("diff", "--raw", "-z", "--no-renames", "--no-abbrev", old, new).split("\0")
    edited: list[str] = []
    regular: dict[str, set[str]] = {}
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        old_mode, new_mode, old_blob, new_blob = meta.lstrip(":").split(" ")[:4]
        if "160000" in (old_mode, new_mode):
            continue  # a submodule: read-tree never writes its files
        blobs = {old_blob, new_blob} - ZERO
        file = Path(checkout) / path
        if not os.path.lexists(file):
            continue  # git unlinks a file before it writes the new one: nothing to lose
        if file.is_symlink():  # git stores a link as a blob of its target
            hashed = g.git("hash-object", "--stdin", cwd=checkout, input=os.readlink(file))
            if hashed not in blobs:
                edited.append(path)
        elif file.is_file():
            regular[path] = blobs
        else:
            edited.append(path)
    paths = list(regular)
    for start in range(0, len(paths), 200):
        batch = paths[start : start + 200]
        hashes = g.git("hash-object", "--", *batch, cwd=checkout).split("\n")
        edited += [
            p
            for p, h in zip(batch, hashes, strict=True)
            if h not in regular[p] and not _partly_written(g, checkout, new, p)
        ]
    return edited


def _partly_written(g: Locked, checkout: str, new: str, path: str) -> bool:
    """True if the file holds the start of its new version: git died while writing it."""
    written = (Path(checkout) / path).read_bytes()
    wanted = subprocess.run(
        ["git", "-C", checkout, "cat-file", "--filters", f"{new}:{path}"],
        capture_output=True,
        env={**os.environ, **GIT_ENV},
        timeout=120,
        pass_fds=(g.lock_fd,),
    )
    return wanted.returncode == 0 and wanted.stdout.startswith(written)
