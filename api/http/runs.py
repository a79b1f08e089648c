"""Run routes: submit and steer runs (commands), list and read them (queries)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from adapters import readmodels
from adapters.db import Cursor
from api.http import auth, schemas
from api.http.errors import JSON, invalid
from api.http.models.common import CommandAnswer
from api.http.models.runs import Retried, Run, RunPage
from api.http.openapi import MIN_POSITION, UUID_SCHEMA, Doc, Endpoint, Param, limit
from api.http.requests import (
    DIGITS,
    MAX_INT,
    Built,
    asked_position,
    bool_param,
    encoded_at,
    idempotent,
    int_param,
    parse,
    path_id,
    read_at,
    read_model_json,
    services,
    uuid_param,
)
from api.service import runs as use_cases
from api.service.engine import Appended
from api.threads import in_thread
from domain.runs import STATUSES


def command_body(request: Request, appended: Appended, **extra: Any) -> dict[str, Any]:
    """The common answer of a command: ids, status, sequence and global position."""
    position = appended.position
    if position is None:  # nothing appended: point at the run's latest event
        position = services(request).db.position_of(appended.run_id, appended.sequence)
    return {
        "run_id": str(appended.run_id),
        "status": appended.status,
        "sequence": appended.sequence,
        "position": position,
        **extra,
    }


def answer_with(
    request: Request, status: int = 200, **extra: Any
) -> Callable[[Appended], Response]:
    """How a run command answers, from what it appended (also for a replay after a crash)."""

    def answer(appended: Appended) -> Response:
        return JSON(command_body(request, appended, **extra), status_code=status)

    return Built(answer)  # command_body reads only when nothing was appended


def run_options(body: schemas.SubmitProjectRun) -> dict[str, Any]:
    """The options of a new run, as the submission use cases take them."""
    return {
        "originating_branch": body.originating_branch,
        "parent_run_id": body.parent_run_id,
        "agent": body.agent,
        "model": body.model,
        "max_attempts": body.max_attempts,
        "auto_approve_tools": body.auto_approve_tools,
        "work_plan": None if body.work_plan is None else body.work_plan.model_dump(),
    }


async def submit_run(request: Request) -> Response:
    owner = auth.user(request)

    async def command() -> Appended:
        body = await parse(request, schemas.SubmitRun)
        return await in_thread(
            lambda: use_cases.submit_run(
                services(request), owner, body.task, body.project_id, **run_options(body)
            )
        )

    return await idempotent(request, owner, command, answer_with(request, 202))


def _command(method: str, body_model: type[schemas.Body] | None = None, status: int = 200):
    """A route handler that runs one engine command on the run in the path."""

    async def endpoint(request: Request) -> Response:
        owner = auth.user(request)
        run_id = path_id(request)

        async def command() -> Appended:
            kwargs: dict[str, Any] = {}
            if body_model is not None:
                kwargs = (await parse(request, body_model, optional=True)).model_dump()
            engine = services(request).engine
            return await in_thread(getattr(engine, method), run_id, owner, **kwargs)

        return await idempotent(request, owner, command, answer_with(request, status))

    return endpoint


async def review_run(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)

    async def command() -> Appended:
        body = await parse(request, schemas.Review)
        return await in_thread(
            lambda: use_cases.review_run(
                services(request),
                run_id,
                owner,
                approved=body.approved,
                request_changes=body.request_changes,
                comment=body.comment,
                subtasks=body.subtasks,
            )
        )

    return await idempotent(request, owner, command, answer_with(request))


async def retry_run(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)

    async def command() -> Appended:
        await parse(request, schemas.NoBody, optional=True)
        return await in_thread(services(request).engine.retry_run, run_id, owner)

    answer = answer_with(request, 201, retried_from=str(run_id))
    return await idempotent(request, owner, command, answer)


async def delete_run(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    appended = await in_thread(services(request).engine.delete_run, run_id, owner)
    body = await in_thread(command_body, request, appended)
    # No body on a 204: the sequence and position travel as headers (read-your-writes).
    headers = {"X-Sequence": str(body["sequence"]), "X-Position": str(body["position"])}
    return Response(status_code=204, headers=headers)


async def get_run(request: Request) -> Response:
    owner, run_id = await auth.run_reader(request)
    at = int_param(request, "at_sequence", None, 1)
    if at is not None:
        return JSON(await in_thread(use_cases.run_at, services(request), run_id, owner, at))
    # The document as the view stores it: from memory in the process that projects it,
    # else with the view's position in one trip to the thread pool; never decoded.
    documents = services(request).runtime.run_documents
    return await read_model_json(
        request,
        lambda _: documents.get(str(run_id), owner),
        lambda cur, _: documents.read(cur, str(run_id), owner),
        "No such run.",
    )


async def list_runs(request: Request, project_id: str | None = None) -> Response:
    owner = auth.user(request)
    statuses = request.query_params.getlist("status")
    for status in statuses:
        if status not in STATUSES:
            raise invalid(f"Unknown status {status!r}.", "status")
    limit = int_param(request, "limit", 50, 1, 500)
    assert limit is not None
    before = _decode_cursor(request.query_params.get("cursor"))
    project_id = project_id or uuid_param(request, "project_id")
    parent_run_id = uuid_param(request, "parent_run_id")
    archived = bool_param(request, "archived", False)
    query = (project_id, tuple(statuses), parent_run_id, archived, before, limit)
    documents = services(request).runtime.run_documents
    # From memory in the process that projects the view, while none of the owner's runs
    # changed since the page was read (projections/run_documents.py); else one query.
    position = await asked_position(request)
    known = services(request).runtime.known_position()
    if known is not None and (position is None or position <= known):
        kept = documents.page(owner, query)
        if kept is not None:
            return encoded_at(kept, known)

    def page(cur: Cursor) -> bytes:
        rows = readmodels.list_runs(
            cur,
            owner,
            project_id=project_id,
            statuses=statuses,
            parent_run_id=parent_run_id,
            archived=archived,
            before=before,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        # The page from the documents as stored: joined, never decoded and encoded again.
        cursor = orjson.dumps(_encode_cursor(rows[-1][0]) if more else None)
        return (
            b'{"items":[' + b",".join(doc for _, doc in rows) + b'],"next_cursor":' + cursor + b"}"
        )

    reached, body = await read_at(
        request, position, lambda cur, _: documents.read_page(owner, query, lambda: page(cur))
    )
    return encoded_at(body, reached)


def _encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("p") or not DIGITS.fullmatch(text[1:]) or int(text[1:]) > MAX_INT:
            raise ValueError(text)
        if _encode_cursor(int(text[1:])) != cursor:  # b64decode skips stray characters
            raise ValueError(cursor)
        return int(text[1:])
    except ValueError:
        raise invalid("The cursor is not one this server gave out.", "cursor") from None


RUN_ANSWERS: dict[int, Any] = {200: CommandAnswer}
CURSOR = Param("cursor", {"type": "string", "maxLength": 100}, "next_cursor of the page before")
STATUS = Param(
    "status",
    {"type": "array", "items": {"type": "string", "enum": list(STATUSES)}},
    "only runs in these statuses (repeatable)",
)
ARCHIVED = Param("archived", {"type": "boolean", "default": False}, "include archived runs")
AT_SEQUENCE = Param(
    "at_sequence",
    {"type": "integer", "minimum": 1},
    "the run as it stood after this event, rebuilt from the events (404 past its last)",
)


def _run_command(
    verb: str, endpoint: Any, body: type[schemas.Body], summary: str, optional: bool = True
) -> Endpoint:
    """POST /api/runs/{run_id}/<verb>: `endpoint`, or the engine's method of that name."""
    if isinstance(endpoint, str):
        endpoint = _command(endpoint, body)
    errors = (400, 401, 403, 404, 409)
    doc = Doc(summary, "runs", RUN_ANSWERS, body=body, body_optional=optional, errors=errors)
    return Endpoint(f"/api/runs/{{run_id}}/{verb}", endpoint, "POST", doc)


routes = [
    Endpoint(
        "/api/runs",
        submit_run,
        "POST",
        Doc("Submit a run", "runs", {202: CommandAnswer}, body=schemas.SubmitRun),
    ),
    Endpoint(
        "/api/runs",
        list_runs,
        "GET",
        Doc(
            "List your runs, newest first",
            "runs",
            {200: RunPage},
            params=(
                STATUS,
                Param("project_id", UUID_SCHEMA),
                Param("parent_run_id", UUID_SCHEMA),
                ARCHIVED,
                limit(50, 500),
                CURSOR,
                MIN_POSITION,
            ),
        ),
    ),
    Endpoint(
        "/api/runs/{run_id}",
        get_run,
        "GET",
        Doc(
            "Read a run",
            "runs",
            {200: Run},
            auth=("user", "runner"),
            params=(AT_SEQUENCE, MIN_POSITION),
            errors=(400, 401, 403, 404, 503),
        ),
    ),
    Endpoint(
        "/api/runs/{run_id}",
        delete_run,
        "DELETE",
        Doc(
            "Delete a run (its events stay for audit)",
            "runs",
            {204: None},
            headers={204: {"X-Sequence": "run.deleted's sequence", "X-Position": "its position"}},
        ),
    ),
    _run_command("pause", _command("pause_run", schemas.NoBody), schemas.NoBody, "Pause a run"),
    _run_command("resume", _command("resume_run", schemas.NoBody), schemas.NoBody, "Resume a run"),
    _run_command(
        "cancel", _command("cancel_run", schemas.CancelRun), schemas.CancelRun, "Cancel a run"
    ),
    _run_command("review", review_run, schemas.Review, "Decide a run's review", optional=False),
    _run_command(
        "archive", _command("archive_run", schemas.NoBody), schemas.NoBody, "Archive a run"
    ),
    Endpoint(
        "/api/runs/{run_id}/retry",
        retry_run,
        "POST",
        Doc(
            "Retry a failed run as a new run",
            "runs",
            {201: Retried},
            body=schemas.NoBody,
            body_optional=True,
            errors=(400, 401, 403, 404, 409),
        ),
    ),
]
