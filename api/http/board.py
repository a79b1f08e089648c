"""Board routes: a project's tasks, their columns and order, starting one, the board."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from api.http import auth, schemas
from api.http.errors import JSON
from api.http.models.projects import (
    Board,
    PickupSettingsChanged,
    ReadyColumn,
    StartedTask,
    TaskChanged,
)
from api.http.openapi import MIN_POSITION, Doc, Endpoint
from api.http.requests import idempotent, parse, path_id, read_model_json, services
from api.http.runs import command_body
from api.service import board as use_cases
from api.service.engine import Appended
from api.threads import in_thread

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
        return await in_thread(
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
        return await in_thread(
            use_cases.move_task, services(request), project_id, owner, task_id, column
        )

    return _task_command(run)


async def _reorder(request: Request, project_id: UUID, owner: str, task_id: str) -> Appended:
    body = await parse(request, schemas.ReorderTask)
    before = None if body.before_task_id is None else str(body.before_task_id)
    after = None if body.after_task_id is None else str(body.after_task_id)
    return await in_thread(
        use_cases.reorder_task, services(request), project_id, owner, task_id, before, after
    )


async def edit_task(request: Request) -> Response:
    owner, project_id, task_id = _ids(request)
    body = await parse(request, schemas.EditTask)
    changes = body.model_dump(exclude_unset=True)
    appended = await in_thread(
        use_cases.edit_task, services(request), project_id, owner, task_id, changes
    )
    return JSON(await in_thread(use_cases.changed_task, services(request), task_id, appended))


async def delete_task(request: Request) -> Response:
    owner, project_id, task_id = _ids(request)
    position = await in_thread(use_cases.delete_task, services(request), project_id, owner, task_id)
    return Response(status_code=204, headers={"X-Position": str(position)})


async def start_task(request: Request) -> Response:
    owner, project_id, task_id = _ids(request)

    async def command() -> Appended:
        await parse(request, schemas.NoBody, optional=True)
        return await in_thread(use_cases.start_task, services(request), project_id, owner, task_id)

    def answer(appended: Appended) -> Response:
        return JSON(command_body(request, appended, task_id=task_id), status_code=202)

    return await idempotent(request, owner, command, answer)


async def ready_all(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")

    async def command() -> Appended:
        await parse(request, schemas.NoBody, optional=True)
        return await in_thread(use_cases.ready_all, services(request), project_id, owner)

    def answer(appended: Appended) -> Response:
        return JSON(use_cases.ready_column(services(request), appended))

    return await idempotent(request, owner, command, answer)


async def put_settings(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    body = await parse(request, schemas.BoardSettings)
    settings = await in_thread(
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


TAG = "board"
ERRORS = (400, 401, 403, 404, 409)
BUSY = "409 while the task's run is going."


def _move_doc(column: str, summary: str) -> Doc:
    return Doc(
        summary,
        TAG,
        {200: TaskChanged},
        body=schemas.NoBody,
        body_optional=True,
        errors=ERRORS,
        description=f"To the bottom of `{column}` (already there: nothing appended). {BUSY} "
        "Moving a task whose run is done or failed leaves that run.",
    )


routes = [
    Endpoint(
        "/api/projects/{project_id}/backlog/tasks",
        create_task,
        "POST",
        Doc(
            "Add a task at the bottom of the backlog",
            TAG,
            {201: TaskChanged},
            body=schemas.CreateTask,
            errors=ERRORS,
        ),
    ),
    Endpoint(
        TASK,
        edit_task,
        "PATCH",
        Doc(
            "Change a task's title or description",
            TAG,
            {200: TaskChanged},
            body=schemas.EditTask,
            errors=ERRORS,
            description="Any of the fields, none null; only real changes are recorded.",
            idempotent=False,
        ),
    ),
    Endpoint(
        TASK,
        delete_task,
        "DELETE",
        Doc(
            "Remove a task",
            TAG,
            {204: None},
            errors=ERRORS,
            description=BUSY,
            headers={204: {"X-Position": "the position of the project's last event"}},
        ),
    ),
    Endpoint(TASK + "/ready", _move("ready"), "POST", _move_doc("ready", "Make a task ready")),
    Endpoint(
        TASK + "/backlog",
        _move("backlog"),
        "POST",
        _move_doc("backlog", "Move a task back to the backlog"),
    ),
    Endpoint(
        TASK + "/archive",
        _move("archived"),
        "POST",
        _move_doc("archived", "Archive a task (hidden from the board)"),
    ),
    Endpoint(
        TASK + "/reorder",
        _task_command(_reorder),
        "POST",
        Doc(
            "Place a task before or after another task of its column",
            TAG,
            {200: TaskChanged},
            body=schemas.ReorderTask,
            errors=ERRORS,
            description="Exactly one of before_task_id and after_task_id (400 otherwise).",
        ),
    ),
    Endpoint(
        TASK + "/start",
        start_task,
        "POST",
        Doc(
            "Start a run for a ready task",
            TAG,
            {202: StartedTask},
            body=schemas.NoBody,
            body_optional=True,
            errors=ERRORS,
            description="409 unless the task is ready with no run, or its last run failed. "
            "The run's task is the title (+ a blank line and the description); it carries "
            "task_id. run_id, status, sequence and position are the run's.",
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}/backlog/ready-all",
        ready_all,
        "POST",
        Doc(
            "Make every backlog task ready, in their order",
            TAG,
            {200: ReadyColumn},
            body=schemas.NoBody,
            body_optional=True,
            errors=ERRORS,
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}/backlog/settings",
        put_settings,
        "PUT",
        Doc(
            "Set the board's auto-pickup",
            TAG,
            {200: PickupSettingsChanged},
            body=schemas.BoardSettings,
            errors=ERRORS,
            description="While auto_pickup is on, the engine starts ready tasks that never "
            "ran, top first, while fewer than max_concurrent_runs of the board's runs are "
            "active. A limit left out keeps the current one.",
            idempotent=False,
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}/board",
        get_board,
        "GET",
        Doc(
            "Read a project's board",
            TAG,
            {200: Board},
            params=(MIN_POSITION,),
            errors=(400, 401, 403, 404, 503),
            headers={200: {"X-Position": "the read models' position this answer is as of"}},
        ),
    ),
]
