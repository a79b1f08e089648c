"""Run diff routes for reviewers: the files a run's branch changed, and each file's diff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import git
from api.http import auth
from api.http.errors import JSON
from api.http.requests import path_id
from domain.engine import Engine
from domain.errors import NotFound
from domain.runs import Run

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
    """`read()`, with a base or branch gone missing answered as 404.

    404 rather than 409: no command on the run would bring the missing branch back, so
    the diff is simply not there (like a run whose own branch does not exist yet).
    """
    try:
        return read()
    except git.MissingRevision as exc:
        raise NotFound(f"The run's diff cannot be computed: {exc}") from None


async def list_files(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    engine: Engine = request.app.state.engine

    def read() -> dict[str, Any]:
        repo, branch, base = _branch_and_base(engine.get_run(run_id, owner))
        files = git.changed_files(repo, base, branch)
        return {
            "branch": branch.removeprefix("refs/heads/"),
            "files": [
                {"path": f.path, "status": f.status, "added": f.added, "removed": f.removed}
                for f in files
            ],
        }

    return JSON(await run_in_threadpool(_diffable, read))


async def file_diff(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    path = request.path_params["path"]
    engine: Engine = request.app.state.engine

    def read() -> str:
        repo, branch, base = _branch_and_base(engine.get_run(run_id, owner))
        if path not in {f.path for f in git.changed_files(repo, base, branch)}:
            raise NotFound("The run did not change that file.")
        return git.file_diff(repo, base, branch, path)

    diff = await run_in_threadpool(_diffable, read)
    return Response(diff, media_type="text/x-diff; charset=utf-8")


routes = [
    Route("/api/runs/{run_id}/files", list_files, methods=["GET"]),
    Route("/api/runs/{run_id}/files/{path:path}", file_diff, methods=["GET"]),
]
