"""Work plan routes: give a run its plan (its owner, or the planner runner holding its
lease), read the plan, its children and the graph a UI draws."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adapters.db import Cursor
from api.http import auth, schemas
from api.http.errors import JSON, invalid
from api.http.models.common import Answer
from api.http.models.runners import CoordinatorPlan, PlanChildren, PlanSet, RunGraph
from api.http.openapi import MIN_POSITION, Doc, Endpoint
from api.http.requests import idempotent, parse, path_id, read_model_doc, services
from api.http.runs import command_body
from api.service import plans as use_cases
from api.service.engine import Appended
from api.threads import in_thread


async def set_work_plan(request: Request) -> Response:
    caller = auth.principal(request, "user", "runner")
    run_id = path_id(request)

    async def command() -> Appended:
        body = await parse(request, schemas.WorkPlan)
        if caller.role == "runner" and body.fencing_token is None:
            raise invalid("A runner sets a plan with its fencing_token.", "fencing_token")
        if caller.role == "user" and body.fencing_token is not None:
            raise invalid("fencing_token is for the planner runner holding the lease.")
        subtasks = [s.model_dump() for s in body.subtasks]
        return await in_thread(
            lambda: use_cases.set_work_plan(
                services(request),
                run_id,
                caller.name,
                subtasks=subtasks,
                auto_approve_children=body.auto_approve_children,
                fencing_token=body.fencing_token,
            )
        )

    def answer(appended: Appended) -> Response:
        plan = use_cases.current_plan(services(request), appended.run_id)
        body = command_body(request, appended)
        return JSON({**plan, "sequence": body["sequence"], "position": body["position"]}, 201)

    return await idempotent(request, caller.name, command, answer)


def _read(read: Callable[[Cursor, str, str], dict[str, Any] | None], missing: str):
    """A route answering one read-model document of the caller's run."""

    async def endpoint(request: Request) -> Response:
        owner = auth.user(request)
        run_id = str(path_id(request))
        return await read_model_doc(request, lambda cur: read(cur, run_id, owner), missing)

    return endpoint


def _read_doc(summary: str, answer: type[Answer]) -> Doc:
    return Doc(
        summary,
        "plans",
        {200: answer},
        params=(MIN_POSITION,),
        errors=(400, 401, 403, 404, 503),
        headers={200: {"X-Position": "the read models' position this answer reflects"}},
    )


routes = [
    Endpoint(
        "/api/runs/{run_id}/work-plan",
        set_work_plan,
        "PUT",
        Doc(
            "Give a run its work plan (its owner, or its planner runner)",
            "plans",
            {201: PlanSet},
            auth=("user", "runner"),
            body=schemas.WorkPlan,
            errors=(400, 401, 403, 404, 409),
            description="A user key sends no `fencing_token`; a runner key must send the "
            "token of the run's current lease (and its lease ends). 409 once subtasks "
            "were dispatched, or when the originating branch does not exist.",
        ),
    ),
    Endpoint(
        "/api/runs/{run_id}/work-plan",
        _read(use_cases.work_plan, "No such run with a work plan."),
        "GET",
        _read_doc("Read a coordinator's work plan", CoordinatorPlan),
    ),
    Endpoint(
        "/api/runs/{run_id}/children",
        _read(use_cases.children, "No such run with a work plan."),
        "GET",
        _read_doc("A coordinator's child runs beside their subtasks", PlanChildren),
    ),
    Endpoint(
        "/api/runs/{run_id}/graph",
        _read(use_cases.graph, "No such run."),
        "GET",
        _read_doc("A run's graph to draw (subtasks, or its lifecycle)", RunGraph),
    ),
]
