"""Project routes: a project names a git repository; its runs merge into its branches."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import git, readmodels
from api.http import auth, schemas
from api.http.errors import JSON, ApiError, invalid
from api.http.requests import (
    bool_param,
    idempotent,
    parse,
    path_id,
    read_model_doc,
    read_position,
    wait_for_read_models,
    with_position,
)
from api.http.runs import answer_with, list_runs, submission_options
from domain.engine import Appended, Engine
from domain.projects import Project
from projections.projects import project_view


def check_repository(request: Request, path: str | None) -> str | None:
    """The resolved repository_path if the operator allows it, else a 400 saying why."""
    if path is None:
        return None
    error = git.repository_error(path, list(request.app.state.config.allowed_roots))
    if error is not None:
        raise invalid(error, "repository_path")
    return str(Path(path).resolve())  # what was checked is what is stored


def check_branch(name: str | None) -> None:
    """A 400 unless git accepts `name` as a branch name."""
    if name is not None and not git.valid_branch_name(name):
        raise invalid(f"{name!r} is not a valid git branch name.", "default_branch")


def project_answer(request: Request, project: Project, appended: Appended) -> dict[str, Any]:
    """The project, with the sequence and position of its last event (read-your-writes)."""
    position = appended.position
    if position is None:
        position = request.app.state.db.position_of(project.id, project.version)
    return {**project_view(project), "sequence": project.version, "position": position}


async def create_project(request: Request) -> Response:
    owner = auth.user(request)
    engine: Engine = request.app.state.engine

    async def command() -> Appended:
        body = await parse(request, schemas.CreateProject)

        def create() -> Appended:
            path = check_repository(request, body.repository_path)
            check_branch(body.default_branch)
            _, appended = engine.create_project(owner, body.name, path, body.default_branch)
            return appended

        return await run_in_threadpool(create)

    def answer(appended: Appended) -> Response:
        project = engine.get_project(appended.run_id, version=appended.sequence)
        return JSON(project_answer(request, project, appended), status_code=201)

    return await idempotent(request, owner, command, answer)


async def list_projects(request: Request) -> Response:
    owner = auth.user(request)
    position = await read_position(request)

    def read() -> list[dict[str, Any]]:
        with request.app.state.db.reading() as cur:
            return readmodels.list_projects(cur, owner)

    return with_position({"items": await run_in_threadpool(read)}, position)


async def get_project(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    return await read_model_doc(
        request,
        lambda cur: readmodels.get_project(cur, str(project_id), owner),
        "No such project.",
    )


async def update_project(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    body = await parse(request, schemas.UpdateProject)
    changes = body.model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise invalid("Fields cannot be set to null.")
    if "default_branch" in changes:
        await run_in_threadpool(check_branch, changes["default_branch"])
    engine: Engine = request.app.state.engine
    project, appended = await run_in_threadpool(engine.update_project, project_id, owner, changes)
    body = await run_in_threadpool(project_answer, request, project, appended)
    return JSON(body)


async def delete_project(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    if not bool_param(request, "confirm", False):
        raise invalid("Deleting a project needs ?confirm=true.", "confirm")
    engine: Engine = request.app.state.engine
    position = await run_in_threadpool(engine.delete_project, project_id, owner)
    # Its active runs are cancelled by the project-cleanup policy; do it now, once the read
    # models include the deletion, so the answer comes after them (if they are slow, the
    # policy still does it: the deletion has happened either way).
    if position is not None:
        with suppress(ApiError):
            await wait_for_read_models(request, position)
            await run_in_threadpool(request.app.state.runtime.cleanup.tick)
    return Response(status_code=204, headers={"X-Position": str(position or 0)})


async def submit_project_run(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")

    async def command() -> Appended:
        body = await parse(request, schemas.SubmitProjectRun)
        engine: Engine = request.app.state.engine

        def submit() -> Appended:
            options = submission_options(engine, owner, body)
            return engine.submit_project_run(project_id, owner, body.task, **options)

        return await run_in_threadpool(submit)

    return await idempotent(request, owner, command, answer_with(request, 202))


async def project_runs(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    await run_in_threadpool(request.app.state.engine.get_project, project_id, owner)
    return await list_runs(request, project_id=str(project_id))


routes = [
    Route("/api/projects", create_project, methods=["POST"]),
    Route("/api/projects", list_projects, methods=["GET"]),
    Route("/api/projects/{project_id}", get_project, methods=["GET"]),
    Route("/api/projects/{project_id}", update_project, methods=["PATCH"]),
    Route("/api/projects/{project_id}", delete_project, methods=["DELETE"]),
    Route("/api/projects/{project_id}/runs", submit_project_run, methods=["POST"]),
    Route("/api/projects/{project_id}/runs", project_runs, methods=["GET"]),
]
