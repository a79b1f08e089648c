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
from api.http import auth, schemas
from api.http.errors import JSON, invalid
from api.http.requests import idempotent, parse, path_id
from api.http.runs import answer_with, command_body
from api.service import claims
from domain.engine import Appended, Engine
from domain.errors import StaleLease
from domain.runs import OWN_BRANCH_PREFIX, Run
from domain.timestamps import format_timestamp


async def claim(request: Request) -> Response:
    name = auth.runner(request)
    body = await parse(request, schemas.Claim)
    deadline = time.monotonic() + body.wait_seconds
    hub, board = request.app.state.hub, claims.board(request)
    seen = hub.generation  # before looking, so news during the look is not lost
    claimed = await run_in_threadpool(claims.try_claim, request, body.runner_id, name)
    while claimed is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Response(status_code=204)
        claimed, go, look_again = await board.look(request, seen, body.runner_id, name)
        if claimed is None and go:
            claimed = await run_in_threadpool(claims.try_claim, request, body.runner_id, name)
        elif claimed is None:
            # Woken when the runs view gains a claimable run (app.wake_claims) or anything
            # is published; the board's next look covers backoffs and the idle poll.
            await hub.wait_for_news(min(remaining, look_again), since=seen)
            seen = hub.generation
    return JSON(claimed)


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
        if body.branch is not None:
            await run_in_threadpool(_check_branch, request, run_id, name, body)
        details = body.model_dump(exclude={"fencing_token", "outcome"})
        engine: Engine = request.app.state.engine
        return await run_in_threadpool(
            lambda: engine.report_outcome(run_id, name, body.fencing_token, body.outcome, **details)
        )

    return await idempotent(request, name, command, answer_with(request))


def branch_refusal(run: Run, branch: str) -> str | None:
    """Why a runner may not report `branch` as the run's branch, or None.

    The branch is what a review diffs and a merge merges: it must be a plain branch
    name that is neither the run's target nor another run's own branch.
    """
    if branch.startswith("refs/") or branch in ("@", "HEAD") or branch.endswith("_HEAD"):
        return "branch must be a plain branch name, not a ref, HEAD or @."
    if branch == run.target_branch:
        return "branch is the run's originating branch, which the run merges into."
    if not branch.startswith(OWN_BRANCH_PREFIX):
        return None
    try:
        other = UUID(branch.removeprefix(OWN_BRANCH_PREFIX))
    except ValueError:
        return None
    return None if other == run.id else "branch is another run's branch (runledger/<run id>)."


def _check_branch(request: Request, run_id: UUID, runner: str, body: schemas.Report) -> None:
    """400 for a branch the runner may not report (only asked of the lease's holder, so a
    refused branch tells nothing about someone else's run)."""
    assert body.branch is not None
    if not git.valid_branch_name(body.branch):
        raise invalid("branch is not a valid git branch name.", "branch")
    run: Run = request.app.state.engine.get_run(run_id)
    lease = run.lease or {}
    if lease.get("runner") != runner or run.fencing_token != body.fencing_token:
        return  # the report itself is refused (stale lease) without a word on the branch
    refusal = branch_refusal(run, body.branch)
    if refusal is not None:
        raise invalid(refusal, "branch")


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
