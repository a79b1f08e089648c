"""Runner routes: claim work under a lease, stream output, report the outcome."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import readmodels
from api.http import auth, schemas
from api.http.errors import JSON
from api.http.requests import (
    idempotent,
    int_param,
    parse,
    path_id,
    read_position,
    services,
    with_position,
)
from api.http.runs import answer_with, command_body
from api.service import claims
from api.service import runners as use_cases
from api.service.engine import Appended


async def claim(request: Request) -> Response:
    name = auth.runner(request)
    body = await parse(request, schemas.Claim)
    gone = asyncio.Event()
    watching = asyncio.ensure_future(_watch_disconnect(request, gone))
    try:
        claimed = await claims.claim(
            services(request), body.runner_id, name, body.wait_seconds, gone
        )
    finally:
        watching.cancel()
    if claimed is None:
        return Response(status_code=204)
    return JSON(claimed)


async def _watch_disconnect(request: Request, gone: asyncio.Event) -> None:
    """Set `gone` when the client disconnects (the body is read: the server's next
    message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def append_events(request: Request) -> Response:
    name = auth.runner(request)
    run_id = path_id(request)

    async def command() -> Appended:
        body = await parse(request, schemas.RunnerEvents)
        events = [(e.type, e.data) for e in body.events]
        engine = services(request).engine
        return await run_in_threadpool(
            engine.record_output, run_id, name, body.fencing_token, events
        )

    def answer(appended: Appended) -> Response:
        body = command_body(request, appended)
        return JSON({"sequence": body["sequence"], "position": body["position"]})

    return await idempotent(request, name, command, answer)


async def report(request: Request) -> Response:
    name = auth.runner(request)
    run_id = path_id(request)

    async def command() -> Appended:
        body = await parse(request, schemas.Report)
        details = body.model_dump(exclude={"fencing_token", "outcome"})
        return await run_in_threadpool(
            lambda: use_cases.report(
                services(request), run_id, name, body.fencing_token, body.outcome, **details
            )
        )

    return await idempotent(request, name, command, answer_with(request))


async def heartbeat(request: Request) -> Response:
    name = auth.runner(request)
    lease_id = str(path_id(request, "lease_id"))
    return JSON(await run_in_threadpool(use_cases.heartbeat, services(request), lease_id, name))


async def list_runners(request: Request) -> Response:
    """Who holds the leases of the caller's runs, since when, and their last heartbeat."""
    owner = auth.user(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    assert limit is not None
    position = await read_position(request)

    def fetch() -> list[dict[str, Any]]:
        with services(request).db.reading() as cur:
            return readmodels.runner_leases(cur, owner, limit)

    return with_position({"items": await run_in_threadpool(fetch)}, position)


routes = [
    Route("/api/runners", list_runners, methods=["GET"]),
    Route("/api/runner/claim", claim, methods=["POST"]),
    Route("/api/runner/leases/{lease_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/api/runs/{run_id}/events", append_events, methods=["POST"]),
    Route("/api/runs/{run_id}/report", report, methods=["POST"]),
]
