"""Usage routes: a run's token usage and cost by model, a project's by model and day."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.http import auth
from api.http.errors import invalid
from api.http.models.projects import ProjectUsage, RunUsage
from api.http.openapi import MIN_POSITION, Doc, Endpoint, Param
from api.http.requests import path_id, read_position, services, with_position
from api.service import usage
from api.threads import in_thread


async def run_usage(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    position = await read_position(request)
    body = await in_thread(usage.run_usage, services(request), run_id, owner)
    return with_position(body, position)


async def project_usage(request: Request) -> Response:
    owner = auth.user(request)
    project_id = path_id(request, "project_id")
    try:
        since = usage.parse_day(request.query_params.get("since"), "since")
        until = usage.parse_day(request.query_params.get("until"), "until")
    except ValueError as exc:
        field = "since" if str(exc).startswith("since") else "until"
        raise invalid(str(exc), field) from None
    if since is not None and until is not None and since > until:
        raise invalid("since must not be after until.", "since")
    position = await read_position(request)
    body = await in_thread(usage.project_usage, services(request), project_id, owner, since, until)
    return with_position(body, position)


ERRORS = (400, 401, 403, 404, 503)
X_POSITION = {200: {"X-Position": "the read models' position this answer is as of"}}


def _day(name: str, text: str) -> Param:
    return Param(name, {"type": "string", "format": "date"}, f"{text} (a UTC day, inclusive)")


routes = [
    Endpoint(
        "/api/runs/{run_id}/usage",
        run_usage,
        "GET",
        Doc(
            "A run's token usage and cost by model",
            "usage",
            {200: RunUsage},
            params=(MIN_POSITION,),
            errors=ERRORS,
            headers=X_POSITION,
            description="A coordinator's includes its children's, each child's total listed "
            "under `children`.",
        ),
    ),
    Endpoint(
        "/api/projects/{project_id}/usage",
        project_usage,
        "GET",
        Doc(
            "A project's token usage and cost by model and by day",
            "usage",
            {200: ProjectUsage},
            params=(_day("since", "from this day"), _day("until", "to this day"), MIN_POSITION),
            errors=ERRORS,
            headers=X_POSITION,
            description="Its runs' usage (deleted runs too) between two UTC days, every day "
            "by default; 400 when since is after until.",
        ),
    ),
]
