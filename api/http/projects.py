"""Project routes: a project names a git repository; its runs merge into its branches."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adapters import readmodels
from api.http import auth, schemas
from api.http.errors import JSON, invalid
from api.http.models.common import CommandAnswer
from api.http.models.projects import Project as ProjectDoc
from api.http.models.projects import ProjectChanged, ProjectList
from api.http.models.runs import RunPage
from api.http.openapi import MIN_POSITION, UUID_SCHEMA, Doc, Endpoint, Param, limit
from api.http.requests import (
    bool_param,
    idempotent,
    parse,
    path_id,
    read_model_doc,
    read_position,
    services,
    with_position,
)
from api.http.runs import ARCHIVED, CURSOR, STATUS, answer_with, list_runs, run_options
from api.service import projects as use_cases
from api.service import queries
from api.service import runs as run_use_cases
from api.service.engine import Appended
from api.threads import in_thread
from domain.projects import Project
from projections.projects import project_view


def project_answer(request: Request, project: Project, appended: Appended) -> dict[str, Any]:
    """The project, with the sequence and position of its last event (read-your-writes)."""
    position = appended.position
    if position is None:
        position = services(request).db.position_of(project.id, project.version)
    return {**project_view(project), "sequence": project.version, "position": position}


async def create_project(request: Request) -> Response:
    owner = auth.user(request)
    engine = services(request).engine

    async def command() -> Appended:
        body = await parse(request, schemas.CreateProject)
        return await in_thread(
            use_cases.create_project,
            services(request),
            owner,
            body.name,
            body.repository_path,
            body.default_branch,
        )

    def answer(appended: Appended) -> Response:
        project = engine.get_project(appended.run_id, version=appended.sequence)
        return JSON(project_answer(request, project, appended), status_code=201)

    return await idempotent(request, owner, command, answer)


async def list_projects(request: Request) -> Response:
    owner = auth.user(request)
    position = await read_position(request)
    items = await in_thread(queries.list_projects, services(request), owner)
    return with_position({"items": items}, position)


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
    project, appended = await in_thread(
        use_cases.update_project, services(request), project_id, owner, changes
    )
    return JSON(await in_thread(project_answer, request, project, appended))


async def delete_project(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    if not bool_param(request, "confirm", False):
        raise invalid("Deleting a project needs ?confirm=true.", "confirm")
    position = await use_cases.delete_project(services(request), project_id, owner)
    return Response(status_code=204, headers={"X-Position": str(position or 0)})


async def submit_project_run(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")

    async def command() -> Appended:
        body = await parse(request, schemas.SubmitProjectRun)
        return await in_thread(
            lambda: run_use_cases.submit_project_run(
                services(request), project_id, owner, body.task, **run_options(body)
            )
        )

    return await idempotent(request, owner, command, answer_with(request, 202))


async def project_runs(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    # The project must be the caller's (404 first, as for any project route); then the
    # answer is the runs list's, filtered to it.
    await in_thread(services(request).engine.get_project, project_id, owner)
    return await list_runs(request, project_id=str(project_id))


TAG = "projects"
READ_ERRORS = (400, 401, 403, 404, 503)
COMMAND_ERRORS = (400, 401, 403, 404, 409)
X_POSITION = {"X-Position": "the read models' position this answer is as of"}
CONFIRM = Param(
    "confirm",
    {"type": "boolean"},
    "must be true (anything else is 400): a deletion is not undone",
    required=True,
)

routes = [
    Endpoint(
        "/api/projects",
        create_project,
        "POST",
        Doc(
            "Create a project",
            TAG,
            {201: ProjectChanged},
            body=schemas.CreateProject,
            errors=(400, 401, 403),
            description="`repository_path`, when given, must be an absolute path to an "
            "existing git repository inside one of the operator's allowed roots (400 "
            "otherwise).",
        ),
    ),
    Endpoint(
        "/api/projects",
        list_projects,
        "GET",
        Doc(
            "List your projects, oldest first",
            TAG,
            {200: ProjectList},
            params=(MIN_POSITION,),
            errors=(400, 401, 403, 503),
            headers={200: X_POSITION},
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}",
        get_project,
        "GET",
        Doc(
            "Read a project",
            TAG,
            {200: ProjectDoc},
            params=(MIN_POSITION,),
            errors=READ_ERRORS,
            headers={200: X_POSITION},
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}",
        update_project,
        "PATCH",
        Doc(
            "Change a project's name, default branch or settings",
            TAG,
            {200: ProjectChanged},
            body=schemas.UpdateProject,
            errors=COMMAND_ERRORS,
            description="Any of the fields, none null; only real changes are recorded.",
            idempotent=False,
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}",
        delete_project,
        "DELETE",
        Doc(
            "Delete a project and cancel its active runs",
            TAG,
            {204: None},
            params=(CONFIRM,),
            errors=COMMAND_ERRORS,
            headers={204: {"X-Position": "the deletion's position (0: nothing appended)"}},
            description="Its active runs get run.cancelled (reason `project deleted`); a run "
            "that is merging is left to finish.",
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}/runs",
        submit_project_run,
        "POST",
        Doc(
            "Submit a run in a project (its repository and default branch)",
            TAG,
            {202: CommandAnswer},
            body=schemas.SubmitProjectRun,
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}/runs",
        project_runs,
        "GET",
        Doc(
            "List a project's runs, newest first",
            TAG,
            {200: RunPage},
            params=(
                STATUS,
                Param("parent_run_id", UUID_SCHEMA),
                ARCHIVED,
                limit(50, 500),
                CURSOR,
                MIN_POSITION,
            ),
            errors=READ_ERRORS,
            headers={200: X_POSITION},
        ),
    ),
]
