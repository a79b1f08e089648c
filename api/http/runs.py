"""Run routes: submit and steer runs (commands), list and read them (queries)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import git, merges, readmodels
from api.http import auth, schemas
from api.http.errors import JSON, invalid
from api.http.requests import (
    DIGITS,
    MAX_INT,
    bool_param,
    idempotent,
    int_param,
    parse,
    path_id,
    read_model_doc,
    read_position,
    uuid_param,
    with_position,
)
from domain.engine import Appended, Engine
from domain.errors import Conflict, NotFound
from domain.runs import AWAITING_REVIEW, DECLINED, MERGING, STATUSES
from projections.policies import remove_worktree
from projections.runs import run_view


def command_body(request: Request, appended: Appended, **extra: Any) -> dict[str, Any]:
    """The common answer of a command: ids, status, sequence and global position."""
    position = appended.position
    if position is None:  # nothing appended: point at the run's latest event
        position = request.app.state.db.position_of(appended.run_id, appended.sequence)
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

    return answer


async def submit_run(request: Request) -> Response:
    owner = auth.user(request)

    async def command() -> Appended:
        body = await parse(request, schemas.SubmitRun)
        engine: Engine = request.app.state.engine

        def submit() -> Appended:
            options = submission_options(engine, owner, body)
            if body.project_id is None:
                return engine.submit_run(owner, body.task, **options)
            try:
                return engine.submit_project_run(body.project_id, owner, body.task, **options)
            except NotFound:
                raise invalid("No such project.", "project_id") from None

        return await run_in_threadpool(submit)

    return await idempotent(request, owner, command, answer_with(request, 202))


def submission_options(
    engine: Engine, owner: str, body: schemas.SubmitProjectRun
) -> dict[str, Any]:
    """The engine's options for a new run (a parent must be one of the owner's runs)."""
    if body.originating_branch is not None and not git.valid_branch_name(body.originating_branch):
        raise invalid("originating_branch is not a valid git branch name.", "originating_branch")
    parent = None
    if body.parent_run_id is not None:
        try:
            parent = str(engine.get_run(body.parent_run_id, owner).id)
        except NotFound:
            raise invalid("No such parent run.", "parent_run_id") from None
    return {
        "parent_run_id": parent,
        "originating_branch": body.originating_branch,
        "agent": body.agent,
        "model": body.model,
        "max_attempts": body.max_attempts,
        "auto_approve_tools": body.auto_approve_tools,
    }


def _command(method: str, body_model: type[schemas.Body] | None = None, status: int = 200):
    """A route handler that runs one engine command on the run in the path."""

    async def endpoint(request: Request) -> Response:
        owner = auth.user(request)
        run_id = path_id(request)

        async def command() -> Appended:
            kwargs: dict[str, Any] = {}
            if body_model is not None:
                kwargs = (await parse(request, body_model, optional=True)).model_dump()
            engine: Engine = request.app.state.engine
            return await run_in_threadpool(getattr(engine, method), run_id, owner, **kwargs)

        return await idempotent(request, owner, command, answer_with(request, status))

    return endpoint


async def review_run(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)

    async def command() -> Appended:
        body = await parse(request, schemas.Review)
        state = request.app.state
        engine: Engine = state.engine

        def review() -> Appended:
            run = engine.get_run(run_id, owner)
            if body.approved and run.status == AWAITING_REVIEW and run.repository_path:
                refusal = merges.merge_refusal(run.repository_path, run.target_branch)
                if refusal:
                    raise Conflict(f"The merge cannot start: {refusal}", run.status)
            appended = engine.review_run(
                run_id,
                owner,
                approved=body.approved,
                request_changes=body.request_changes,
                comment=body.comment,
            )
            if appended.status == MERGING:
                state.runtime.merger.merge(run_id)  # now, rather than at the next tick
                run = engine.get_run(run_id)
                appended = Appended(run.id, run.status, run.version, None)
            elif appended.status == DECLINED:
                remove_worktree(engine.get_run(run_id))
            return appended

        return await run_in_threadpool(review)

    return await idempotent(request, owner, command, answer_with(request))


async def retry_run(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)

    async def command() -> Appended:
        await parse(request, schemas.NoBody, optional=True)
        engine: Engine = request.app.state.engine
        return await run_in_threadpool(engine.retry_run, run_id, owner)

    answer = answer_with(request, 201, retried_from=str(run_id))
    return await idempotent(request, owner, command, answer)


async def delete_run(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    appended = await run_in_threadpool(request.app.state.engine.delete_run, run_id, owner)
    body = await run_in_threadpool(command_body, request, appended)
    # No body on a 204: the sequence and position travel as headers (read-your-writes).
    headers = {"X-Sequence": str(body["sequence"]), "X-Position": str(body["position"])}
    return Response(status_code=204, headers=headers)


async def get_run(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    at = int_param(request, "at_sequence", None, 1)
    engine: Engine = request.app.state.engine
    if at is not None:

        def historic() -> dict[str, Any]:
            run = engine.get_run(run_id, owner)
            if at > run.version:
                raise NotFound(f"The run has no event {at}.")
            return run_view(engine.get_run(run_id, owner, version=at))

        return JSON(await run_in_threadpool(historic))
    return await read_model_doc(
        request, lambda cur: readmodels.get_run(cur, str(run_id), owner), "No such run."
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
    position = await read_position(request)

    def read() -> list[tuple[int, dict[str, Any]]]:
        with request.app.state.db.reading() as cur:
            return readmodels.list_runs(
                cur,
                owner,
                project_id=project_id,
                statuses=statuses,
                parent_run_id=parent_run_id,
                archived=archived,
                before=before,
                limit=limit + 1,
            )

    rows = await run_in_threadpool(read)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor(rows[-1][0]) if more else None
    return with_position({"items": [doc for _, doc in rows], "next_cursor": next_cursor}, position)


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


routes = [
    Route("/api/runs", submit_run, methods=["POST"]),
    Route("/api/runs", list_runs, methods=["GET"]),
    Route("/api/runs/{run_id}", get_run, methods=["GET"]),
    Route("/api/runs/{run_id}", delete_run, methods=["DELETE"]),
    Route("/api/runs/{run_id}/pause", _command("pause_run", schemas.NoBody), methods=["POST"]),
    Route("/api/runs/{run_id}/resume", _command("resume_run", schemas.NoBody), methods=["POST"]),
    Route("/api/runs/{run_id}/cancel", _command("cancel_run", schemas.CancelRun), methods=["POST"]),
    Route("/api/runs/{run_id}/review", review_run, methods=["POST"]),
    Route("/api/runs/{run_id}/archive", _command("archive_run", schemas.NoBody), methods=["POST"]),
    Route("/api/runs/{run_id}/retry", retry_run, methods=["POST"]),
]
