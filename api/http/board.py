"""Board routes: a project's tasks, their columns and order, starting one, the board."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http import auth, schemas
from api.http.errors import JSON
from api.http.requests import idempotent, parse, path_id, read_model_json, services
from api.http.runs import command_body
from api.service import board as use_cases
from api.service.engine import Appended

TASK = "/api/projects/{project_id}/backlog/tasks/{task_id}"


def _ids(request: Request) -> tuple[str, UUID, str]:
    """The caller, the project and the task of a task route (400 on a bad id)."""
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    return owner, project_id, str(path_id(request, "task_id"))


async def create_task(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")

    async def command() -> Appended:
        body = await parse(request, schemas.CreateTask)
        return await run_in_threadpool(
            use_cases.create_task,
            services(request),
            project_id,
            owner,
            body.title,
            body.description,
        )

    def answer(appended: Appended) -> Response:
        return JSON(use_cases.created_task(services(request), appended), status_code=201)

    return await idempotent(request, owner, command, answer)


def _task_command(
    run: Callable[[Request, UUID, str, str], Awaitable[Appended]],
) -> Callable[[Request], Awaitable[Response]]:
    """A POST on one task: its command, answered with the task as the command left it."""

    async def endpoint(request: Request) -> Response:
        owner, project_id, task_id = _ids(request)

        def answer(appended: Appended) -> Response:
            return JSON(use_cases.changed_task(services(request), task_id, appended))

        return await idempotent(
            request, owner, lambda: run(request, project_id, owner, task_id), answer
        )

    return endpoint


def _move(column: str) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request, project_id: UUID, owner: str, task_id: str) -> Appended:
        await parse(request, schemas.NoBody, optional=True)
        return await run_in_threadpool(
            use_cases.move_task, services(request), project_id, owner, task_id, column
        )

    return _task_command(run)


async def _reorder(request: Request, project_id: UUID, owner: str, task_id: str) -> Appended:
    body = await parse(request, schemas.ReorderTask)
    before = None if body.before_task_id is None else str(body.before_task_id)
    after = None if body.after_task_id is None else str(body.after_task_id)
    return await run_in_threadpool(
        use_cases.reorder_task, services(request), project_id, owner, task_id, before, after
    )


async def edit_task(request: Request) -> Response:
    owner, project_id, task_id = _ids(request)
    body = await parse(request, schemas.EditTask)
    changes = body.model_dump(exclude_unset=True)
    appended = await run_in_threadpool(
        use_cases.edit_task, services(request), project_id, owner, task_id, changes
    )
    return JSON(
        await run_in_threadpool(use_cases.changed_task, services(request), task_id, appended)
    )


async def delete_task(request: Request) -> Response:
    owner, project_id, task_id = _ids(request)
    position = await run_in_threadpool(
        use_cases.delete_task, services(request), project_id, owner, task_id
    )
    return Response(status_code=204, headers={"X-Position": str(position)})


async def start_task(request: Request) -> Response:
    owner, project_id, task_id = _ids(request)

    async def command() -> Appended:
        await parse(request, schemas.NoBody, optional=True)
        return await run_in_threadpool(
            use_cases.start_task, services(request), project_id, owner, task_id
        )

    def answer(appended: Appended) -> Response:
        return JSON(command_body(request, appended, task_id=task_id), status_code=202)

    return await idempotent(request, owner, command, answer)


async def ready_all(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")

    async def command() -> Appended:
        await parse(request, schemas.NoBody, optional=True)
        return await run_in_threadpool(use_cases.ready_all, services(request), project_id, owner)

    def answer(appended: Appended) -> Response:
        return JSON(use_cases.ready_column(services(request), appended))

    return await idempotent(request, owner, command, answer)


async def put_settings(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    body = await parse(request, schemas.BoardSettings)
    settings = await run_in_threadpool(
        use_cases.change_settings,
        services(request),
        project_id,
        owner,
        body.auto_pickup,
        body.max_concurrent_runs,
    )
    return JSON(settings)


async def get_board(request: Request) -> Response:
    owner = auth.user(request)
    project_id = str(path_id(request, "project_id"))
    boards = services(request).boards
    return await read_model_json(
        request,
        lambda position: boards.cached(project_id, owner, position),
        lambda cur, position: boards.answer(cur, project_id, owner, position),
        "No such project.",
    )


routes = [
    Route("/api/projects/{project_id}/backlog/tasks", create_task, methods=["POST"]),
    Route(TASK, edit_task, methods=["PATCH"]),
    Route(TASK, delete_task, methods=["DELETE"]),
    Route(TASK + "/ready", _move("ready"), methods=["POST"]),
    Route(TASK + "/backlog", _move("backlog"), methods=["POST"]),
    Route(TASK + "/archive", _move("archived"), methods=["POST"]),
    Route(TASK + "/reorder", _task_command(_reorder), methods=["POST"]),
    Route(TASK + "/start", start_task, methods=["POST"]),
    Route("/api/projects/{project_id}/backlog/ready-all", ready_all, methods=["POST"]),
    Route("/api/projects/{project_id}/backlog/settings", put_settings, methods=["PUT"]),
    Route("/api/projects/{project_id}/board", get_board, methods=["GET"]),
]
