"""Git, through the git CLI: repositories, run worktrees and diffs (the merge: merges.py)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "runledger",
    "GIT_AUTHOR_EMAIL": "runledger@localhost",
    "GIT_COMMITTER_NAME": "runledger",
    "GIT_COMMITTER_EMAIL": "runledger@localhost",
}


class GitError(Exception):
    """A git command failed, or the repository is not in a state we can work with."""


@dataclass(frozen=True)
class ChangedFile:
    """One file a run changed."""

    path: str
    status: str  # added | modified | deleted | renamed
    added: int
    removed: int


def run(
    repo: str | Path, *args: str, input: str | None = None, pass_fds: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run git in `repo`: the finished process, whatever its exit status."""
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **GIT_ENV},
        timeout=120,
        pass_fds=pass_fds,
    )


def output(result: subprocess.CompletedProcess[str], args: tuple[str, ...]) -> str:
    """A finished git's stdout without the final newline (GitError if it failed)."""
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args[:2])} failed: {result.stderr.strip()[:500]}")
    return result.stdout.rstrip("\n")


def git(repo: str | Path, *args: str, check: bool = True, input: str | None = None) -> str:
    """Run git in `repo`; its stdout (stripped of the final newline)."""
    if any("\x00" in arg for arg in (str(repo), *args)):
        raise GitError("A git argument contains a NUL character.")
    result = run(repo, *args, input=input)
    return output(result, args) if check else result.stdout.rstrip("\n")


def worktree_branches(listing: str) -> list[tuple[str, str]]:
    """(path, branch ref) of each worktree on a branch, from `git worktree list --porcelain`."""
    found: list[tuple[str, str]] = []
    path = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree ") :]
        elif line.startswith("branch ") and path:
            found.append((path, line[len("branch ") :]))
    return found


def repository_error(path: str, allowed_roots: list[str]) -> str | None:
    """Why `path` is not an acceptable repository_path, or None if it is.

    The allowed roots are checked first, on the path with symlinks resolved, so nothing is
    said about what exists outside them.
    """
    if "\x00" in path:
        return "repository_path contains a NUL character."
    candidate = Path(path)
    if not candidate.is_absolute():
        return "repository_path must be an absolute path."
    real = candidate.resolve()
    if allowed_roots and not any(
        real == Path(root).resolve() or real.is_relative_to(Path(root).resolve())
        for root in allowed_roots
    ):
        return "repository_path is outside the allowed roots."
    if not real.exists():
        return "repository_path does not exist."
    if not real.is_dir():
        return "repository_path is not a directory."
    top = run(real, "rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != real:
        return "repository_path is not the top of a git repository."
    return None


def valid_branch_name(name: str) -> bool:
    """True if git accepts `name` as a branch name (`git check-ref-format --branch`)."""
    if name.startswith("-"):
        return False
    result = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, timeout=10
    )
    return result.returncode == 0


def branch_exists(repo: str | Path, branch: str) -> bool:
    """True if refs/heads/<branch> exists."""
    return run(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").returncode == 0


def tree_of(repo: str | Path, ref: str) -> str:
    """The tree id of a commit-ish."""
    return git(repo, "rev-parse", f"{ref}^{{tree}}")


class MissingRevision(GitError):
    """A branch or commit a diff needs does not exist (or shares no history with the other)."""


def _git_bytes(repo: str | Path, *args: str) -> bytes:
    """Run git in `repo` for machine-readable output: raw bytes, names never quoted."""
    result = subprocess.run(
        ["git", "-C", str(repo), "--literal-pathspecs", "-c", "core.quotePath=false", *args],
        capture_output=True,
        env={**os.environ, **GIT_ENV},
        timeout=120,
    )
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()[:500]
        raise GitError(f"git {' '.join(args[:2])} failed: {stderr}")
    return result.stdout


def _commit(repo: str | Path, rev: str, what: str) -> str:
    """The commit id `rev` names (MissingRevision when it names none)."""
    if "\x00" in rev:  # no revision has one, and subprocess would refuse the argument
        raise MissingRevision(f"The {what} does not exist.")
    found = run(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if found.returncode != 0 or not found.stdout.strip():
        raise MissingRevision(f"The {what} {rev} does not exist.")
    return found.stdout.strip()


def _fork_point(repo: str | Path, base: str, branch: str) -> tuple[str, str]:
    """(merge base, branch tip) as commit ids: where `branch` left `base`, and where it is."""
    base_commit = _commit(repo, base, "base")
    tip = _commit(repo, branch, "branch")
    found = run(repo, "merge-base", base_commit, tip)
    if found.returncode != 0 or not found.stdout.strip():
        raise MissingRevision(f"The branch {branch} shares no history with {base}.")
    return found.stdout.strip(), tip


def _name(raw: bytes) -> str:
    # A name that is not UTF-8 is listed with replacement characters (its diff then 404s).
    return raw.decode("utf-8", errors="replace")


def changed_files(repo: str | Path, base: str, branch: str) -> list[ChangedFile]:
    """The files `branch` changed since it left `base`, with line counts.

    `base` and `branch` are revisions (`refs/heads/x`, `<commit>^1`); either missing, or the
    two unrelated, raises MissingRevision. Output is NUL-separated, so no name is quoted.
    """
    statuses = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "T": "modified"}
    merge_base, tip = _fork_point(repo, base, branch)
    counts: dict[str, tuple[int, int]] = {}
    numstat = _git_bytes(repo, "diff", "--numstat", "-z", "--no-renames", merge_base, tip)
    for record in numstat.split(b"\0"):
        if not record:
            continue
        raw_added, raw_removed, raw_name = record.split(b"\t", 2)
        counts[_name(raw_name)] = (  # "-" for a binary file
            int(raw_added) if raw_added != b"-" else 0,
            int(raw_removed) if raw_removed != b"-" else 0,
        )
    fields = _git_bytes(repo, "diff", "--name-status", "-z", "--no-renames", merge_base, tip)
    parts = fields.split(b"\0")
    files = []
    for code, raw_path in zip(parts[0::2], parts[1::2], strict=False):
        if not code:
            continue
        path = _name(raw_path)
        added, removed = counts.get(path, (0, 0))
        files.append(ChangedFile(path, statuses.get(code[:1].decode(), "modified"), added, removed))
    return files


def file_diff(repo: str | Path, base: str, branch: str, path: str) -> str:
    """The unified diff of one file on `branch` since it left `base` (`path` taken literally)."""
    merge_base, tip = _fork_point(repo, base, branch)
    diff = _git_bytes(repo, "diff", "--no-renames", "--no-ext-diff", merge_base, tip, "--", path)
    return diff.decode("utf-8", errors="replace")


def add_worktree(repo: str | Path, path: str | Path, branch: str, start: str) -> None:
    """Create a worktree at `path` on a new (or existing) branch starting at `start`."""
    if branch_exists(repo, branch):
        git(repo, "worktree", "add", str(path), branch)
    else:
        git(repo, "worktree", "add", "-b", branch, str(path), start)


def remove_worktree(repo: str | Path, path: str | Path) -> None:
    """Remove a worktree (and prune stale entries); quiet if it is already gone."""
    run(repo, "worktree", "remove", "--force", str(path))
    run(repo, "worktree", "prune")


def commit_all(worktree: str | Path, message: str, author: tuple[str, str] | None = None) -> bool:
    """Commit every change in a worktree, as `author` (name, email) when given, else as
    runledger; False when there was nothing to commit."""
    git(worktree, "add", "--all")
    if run(worktree, "diff", "--cached", "--quiet").returncode == 0:
        return False
    who: list[str] = []
    if author is not None:
        name, email = author
        who = ["-c", f"user.name={name}", "-c", f"user.email={email}"]
    result = subprocess.run(
        ["git", "-C", str(worktree), *who, "commit", "--quiet", "--no-verify", "-m", message],
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"} if author else {**os.environ, **GIT_ENV},
        timeout=120,
    )
    output(result, ("commit",))
    return True


def main_repository(worktree: str | Path) -> str | None:
    """The repository a linked worktree belongs to (None when it is not one, or broken)."""
    result = run(worktree, "rev-parse", "--path-format=absolute", "--git-common-dir")
    if result.returncode != 0:
        return None
    common = Path(result.stdout.strip())
    return str(common.parent) if common.name == ".git" else str(common)


def identity(repo: str | Path) -> tuple[str, str] | None:
    """The user.name and user.email git would commit as in `repo` (its own config, the
    user's or the system's), or None unless both are set."""
    found = []
    for key in ("user.name", "user.email"):
        result = subprocess.run(
            ["git", "-C", str(repo), "config", "--get", key],
            capture_output=True,
            text=True,
            timeout=30,
        )
        value = result.stdout.strip()
        if result.returncode != 0 or not value:
            return None
        found.append(value)
    return found[0], found[1]


def parse_author(text: str) -> tuple[str, str] | None:
    """`Name <email>` as (name, email); None when it is not of that form."""
    name, bracket, rest = text.strip().partition("<")
    email, closing, tail = rest.partition(">")
    if not bracket or not closing or tail.strip() or not name.strip() or not email.strip():
        return None
    if any(c in text for c in "\n\r\x00"):
        return None
    return name.strip(), email.strip()


def create_branch(repo: str | Path, branch: str, start: str) -> bool:
    """Create refs/heads/<branch> at the commit `start` names, unless it exists; True if
    it was created (GitError when `start` names no commit)."""
    commit = _commit(repo, f"refs/heads/{start}", "branch")
    created = run(repo, "update-ref", f"refs/heads/{branch}", commit, "")  # only if absent
    if created.returncode == 0:
        return True
    if branch_exists(repo, branch):
        return False
    raise GitError(f"git update-ref failed: {created.stderr.strip()[:500]}")


def diff_stats(repo: str | Path, base: str, branch: str) -> dict[str, int]:
    """{files, added, removed}: what `branch` changed since it left `base` (revisions)."""
    files = changed_files(repo, base, branch)
    return {
        "files": len(files),
        "added": sum(f.added for f in files),
        "removed": sum(f.removed for f in files),
    }
