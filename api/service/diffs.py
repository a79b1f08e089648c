"""What a reviewer reads of a run's branch: the files it changed, and each file's diff."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from adapters import git
from domain.errors import NotFound
from domain.runs import Run

if TYPE_CHECKING:
    from api.service.bootstrap import Services

T = TypeVar("T")


def _branch_and_base(run: Run) -> tuple[str, str, str]:
    """(repository, branch, base) as full revisions: a merged run diffs against its merge's
    first parent, any other against its originating branch."""
    if run.repository_path is None:
        raise NotFound("The run has no repository.")
    branch = run.branch_name
    try:
        if not git.branch_exists(run.repository_path, branch):
            raise NotFound("The run's branch does not exist.")
    except (git.GitError, OSError):
        raise NotFound("The run's repository cannot be read.") from None
    base = f"refs/heads/{run.target_branch}"
    if run.merge_result and run.merge_result.startswith("merged:"):
        base = run.merge_result.removeprefix("merged:") + "^1"
    return run.repository_path, f"refs/heads/{branch}", base


def _diffable(read: Callable[[], T]) -> T:
    """`read()`, with a base or branch gone missing answered as NotFound.

    Not found rather than a conflict: no command on the run would bring the missing
    branch back, so the diff is simply not there (like a run whose own branch does not
    exist yet).
    """
    try:
        return read()
    except git.MissingRevision as exc:
        raise NotFound(f"The run's diff cannot be computed: {exc}") from None


def changed_files(services: Services, run_id: UUID, owner: str) -> dict[str, Any]:
    """The run's branch and the files it changed, with their line counts."""

    def read() -> dict[str, Any]:
        repo, branch, base = _branch_and_base(services.engine.get_run(run_id, owner))
        files = git.changed_files(repo, base, branch)
        return {
            "branch": branch.removeprefix("refs/heads/"),
            "files": [
                {"path": f.path, "status": f.status, "added": f.added, "removed": f.removed}
                for f in files
            ],
        }

    return _diffable(read)


def file_diff(services: Services, run_id: UUID, owner: str, path: str) -> str:
    """The diff of one file the run changed."""

    def read() -> str:
        repo, branch, base = _branch_and_base(services.engine.get_run(run_id, owner))
        if path not in {f.path for f in git.changed_files(repo, base, branch)}:
            raise NotFound("The run did not change that file.")
        return git.file_diff(repo, base, branch, path)

    return _diffable(read)
