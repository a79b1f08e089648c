"""Runner routes: claim work under a lease, stream output, report the outcome."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import git, readmodels
from api import auth, schemas
from api.errors import JSON, invalid
from api.requests import idempotent, parse, path_id
from api.runs import answer_with, command_body
from domain.engine import Appended, Engine
from domain.errors import Conflict, NotFound, StaleLease
from domain.timestamps import format_timestamp

CANDIDATES = 20


def _try_claim(request: Request, runner_id: str, runner: str) -> dict[str, Any] | None:
    """Claim the oldest claimable run; None when there is none (losers of a race move on)."""
    state = request.app.state
    engine: Engine = state.engine
    with state.db.reading() as cur:
        candidates = readmodels.claimable_runs(cur, CANDIDATES, time.time())
    for candidate in candidates:
        try:
            appended, lease = engine.claim_run(UUID(candidate), runner_id, runner)
        except (Conflict, NotFound):
            continue
        run = appended.aggregate
        return {
            "lease_id": lease.lease_id,
            "fencing_token": lease.fencing_token,
            "lease_expires_at": format_timestamp(lease.expires_at),
            "run": {
                "run_id": str(run.id),
                "task": run.task,
                "attempt": run.attempt,
                "revision": run.revision,
                "comment": run.comment,
                "repository_path": run.repository_path,
                "originating_branch": run.originating_branch,
                "agent": run.agent,
                "model": run.model,
                "max_attempts": run.max_attempts,
                "auto_approve_tools": run.auto_approve_tools,
                "sequence": appended.sequence,
                "position": appended.position,
            },
        }
    return None


def _next_claimable_in(request: Request) -> float:
    with request.app.state.db.reading() as cur:
        at = readmodels.next_claimable_at(cur, time.time())
    return float("inf") if at is None else max(at - time.time(), 0.0)


async def claim(request: Request) -> Response:
    name = auth.runner(request)
    body = await parse(request, schemas.Claim)
    deadline = time.monotonic() + body.wait_seconds
    hub = request.app.state.hub
    while True:
        seen = hub.generation  # before looking, so news during the look is not lost
        claimed = await run_in_threadpool(_try_claim, request, body.runner_id, name)
        if claimed is not None:
            return JSON(claimed)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Response(status_code=204)
        # Woken when the read models move, or when a run's retry backoff ends; the 0.5 s
        # cap covers read models moved by another process.
        backoff_ends = await run_in_threadpool(_next_claimable_in, request)
        await hub.wait_for_news(min(remaining, 0.5, backoff_ends), since=seen)


async def append_events(request: Request) -> Response:
    name = auth.runner(request)
    run_id = path_id(request)

    async def command() -> Appended:
        body = await parse(request, schemas.RunnerEvents)
        events = [(e.type, e.data) for e in body.events]
        engine: Engine = request.app.state.engine
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
        if body.branch is not None and not await run_in_threadpool(
            git.valid_branch_name, body.branch
        ):
            raise invalid("branch is not a valid git branch name.", "branch")
        details = body.model_dump(exclude={"fencing_token", "outcome"})
        engine: Engine = request.app.state.engine
        return await run_in_threadpool(
            lambda: engine.report_outcome(run_id, name, body.fencing_token, body.outcome, **details)
        )

    return await idempotent(request, name, command, answer_with(request))


async def heartbeat(request: Request) -> Response:
    name = auth.runner(request)
    lease_id = str(path_id(request, "lease_id"))
    state = request.app.state

    def renew() -> dict[str, Any]:
        run_id = _run_of_lease(state, lease_id)
        if run_id is None:
            # Maybe the claim is newer than the leases view: let it catch up once.
            head = state.db.head()
            deadline = time.monotonic() + 5
            while state.read_models_position() < head and time.monotonic() < deadline:
                time.sleep(0.005)
            run_id = _run_of_lease(state, lease_id)
        if run_id is None:
            raise StaleLease("The lease is no longer current.")
        appended, expires = state.engine.renew_lease(UUID(run_id), lease_id, name)
        return {
            "lease_id": lease_id,
            "lease_expires_at": format_timestamp(expires),
            "sequence": appended.sequence,
            "position": appended.position,
        }

    return JSON(await run_in_threadpool(renew))


def _run_of_lease(state: Any, lease_id: str) -> str | None:
    with state.db.reading() as cur:
        return readmodels.run_of_lease(cur, lease_id)


routes = [
    Route("/api/runner/claim", claim, methods=["POST"]),
    Route("/api/runner/leases/{lease_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/api/runs/{run_id}/events", append_events, methods=["POST"]),
    Route("/api/runs/{run_id}/report", report, methods=["POST"]),
]
