"""Run diff routes for reviewers: the files a run's branch changed, and each file's diff."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.http import auth
from api.http.errors import JSON
from api.http.models.runners import ChangedFiles
from api.http.openapi import DIFF, Doc, Endpoint
from api.http.requests import path_id, services
from api.service import diffs
from api.threads import in_thread


async def list_files(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    return JSON(await in_thread(diffs.changed_files, services(request), run_id, owner))


async def file_diff(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    path = request.path_params["path"]
    diff = await in_thread(diffs.file_diff, services(request), run_id, owner, path)
    return Response(diff, media_type="text/x-diff; charset=utf-8")


MISSING = (
    "404 when the run has no repository, or its branch, its originating branch (or merge "
    "commit) is missing, or the two share no history."
)

routes = [
    Endpoint(
        "/api/runs/{run_id}/files",
        list_files,
        "GET",
        Doc("The files a run's branch changed", "files", {200: ChangedFiles}, description=MISSING),
    ),
    Endpoint(
        "/api/runs/{run_id}/files/{path:path}",
        file_diff,
        "GET",
        Doc(
            "One changed file's unified diff",
            "files",
            {200: DIFF},
            description="The path is taken literally. " + MISSING,
        ),
    ),
]
