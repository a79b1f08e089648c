"""Runner routes: claim work under a lease, stream output, report the outcome."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adapters import readmodels
from api.http import auth, schemas
from api.http.errors import JSON
from api.http.models.common import CommandAnswer
from api.http.models.runners import Claimed, Heartbeat, OutputAppended, RunnerLeases
from api.http.openapi import MIN_POSITION, Doc, Endpoint, limit
from api.http.requests import (
    Built,
    idempotent,
    int_param,
    parse,
    path_id,
    read_position,
    services,
    with_position,
)
from api.http.runs import answer_with, command_body
from api.service import claims, loop_commands
from api.service import runners as use_cases
from api.service.engine import Appended
from api.threads import in_thread


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
        decide = engine.output_decision(name, body.fencing_token, events)
        return await loop_commands.update(engine, run_id, decide)

    def answer(appended: Appended) -> Response:
        body = command_body(request, appended)
        return JSON({"sequence": body["sequence"], "position": body["position"]})

    return await idempotent(request, name, command, Built(answer))


async def report(request: Request) -> Response:
    name = auth.runner(request)
    run_id = path_id(request)

    async def command() -> Appended:
        body = await parse(request, schemas.Report)
        details = body.model_dump(exclude={"fencing_token", "outcome"})
        return await in_thread(
            lambda: use_cases.report(
                services(request), run_id, name, body.fencing_token, body.outcome, **details
            )
        )

    return await idempotent(request, name, command, answer_with(request))


async def heartbeat(request: Request) -> Response:
    name = auth.runner(request)
    lease_id = str(path_id(request, "lease_id"))
    return JSON(await in_thread(use_cases.heartbeat, services(request), lease_id, name))


async def list_runners(request: Request) -> Response:
    """Who holds the leases of the caller's runs, since when, and their last heartbeat."""
    owner = auth.user(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    assert limit is not None
    position = await read_position(request)

    def fetch() -> list[dict[str, Any]]:
        with services(request).db.reading() as cur:
            return readmodels.runner_leases(cur, owner, limit)

    return with_position({"items": await in_thread(fetch)}, position)


RUNNER = ("runner",)
LEASE_ERRORS = (400, 401, 403, 404, 409)  # 409: stale_lease, or the run's status

routes = [
    Endpoint(
        "/api/runners",
        list_runners,
        "GET",
        Doc(
            "Who holds the leases of your runs",
            "runners",
            {200: RunnerLeases},
            params=(limit(100, 1000), MIN_POSITION),
            errors=(400, 401, 403, 503),
            headers={200: {"X-Position": "the read models' position this answer reflects"}},
        ),
    ),
    Endpoint(
        "/api/runner/claim",
        claim,
        "POST",
        Doc(
            "Claim the oldest claimable run (long-poll)",
            "runners",
            {200: Claimed, 204: None},
            auth=RUNNER,
            body=schemas.Claim,
            errors=(400, 401, 403),
            description="Waits up to `wait_seconds` for a claimable run; 204 when none "
            "came. The runner must confirm the claim (an event, a heartbeat or its report) "
            "within RUNLEDGER_CLAIM_CONFIRM_SECONDS, or the run is given back.",
            idempotent=False,
        ),
    ),
    Endpoint(
        "/api/runner/leases/{lease_id}/heartbeat",
        heartbeat,
        "POST",
        Doc(
            "Renew a lease; get the gates and directives to act on",
            "runners",
            {200: Heartbeat},
            auth=RUNNER,
            errors=(400, 401, 403, 409),
            description="409 stale_lease once the lease is lost. No body.",
            idempotent=False,
        ),
    ),
    Endpoint(
        "/api/runs/{run_id}/events",
        append_events,
        "POST",
        Doc(
            "Append the runner's output events",
            "runners",
            {200: OutputAppended},
            auth=RUNNER,
            body=schemas.RunnerEvents,
            errors=(*LEASE_ERRORS, 413),
            description="One batch, appended all or nothing under the lease's fencing token.",
        ),
    ),
    Endpoint(
        "/api/runs/{run_id}/report",
        report,
        "POST",
        Doc(
            "Report how the runner's attempt ended",
            "runners",
            {200: CommandAnswer},
            auth=RUNNER,
            body=schemas.Report,
            errors=LEASE_ERRORS,
        ),
    ),
]
