"""Gate and steering routes: resolve a runner's gate, toggle auto-approval, steer a run."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.http import auth, schemas
from api.http.errors import JSON, invalid
from api.http.models.runners import AutoApproveSet, DirectiveSent, GateResolved
from api.http.openapi import Doc, Endpoint
from api.http.requests import idempotent, parse, path_id, services
from api.http.runs import answer_with, command_body
from api.service import steering
from api.service.engine import Appended
from api.threads import in_thread
from domain.runs.gate_rules import MAX_ID


def gate_param(request: Request) -> str:
    """The gate id in the path: the runner's own text, 1 to MAX_ID characters (400 otherwise)."""
    gate_id: str = request.path_params["gate_id"]
    if len(gate_id) > MAX_ID:
        raise invalid(f"gate_id is at most {MAX_ID} characters.", "gate_id")
    return gate_id


async def resolve_gate(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    gate_id = gate_param(request)
    body = await parse(request, schemas.ResolveGate)
    engine = services(request).engine

    async def command() -> Appended:
        return await in_thread(
            lambda: engine.resolve_gate(
                run_id, owner, gate_id, decision=body.decision, answer=body.answer, scope=body.scope
            )
        )

    answer = answer_with(request, gate_id=gate_id, decision=body.decision)
    return await idempotent(request, owner, command, answer)


async def auto_approve(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    body = await parse(request, schemas.AutoApprove)
    engine = services(request).engine

    async def command() -> Appended:
        return await in_thread(lambda: engine.set_auto_approve(run_id, owner, enabled=body.enabled))

    answer = answer_with(request, auto_approve_tools=body.enabled)
    return await idempotent(request, owner, command, answer)


async def steer(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    body = await parse(request, schemas.Steer)
    found = services(request)

    async def command() -> Appended:
        return await in_thread(
            lambda: steering.steer(
                found,
                run_id,
                owner,
                kind=body.kind,
                instruction=body.instruction,
                target_child_run_id=body.target_child_run_id,
            )
        )

    def answer(appended: Appended) -> Response:
        described = steering.directive_answer(found, appended)
        return JSON({**command_body(request, appended), **described}, status_code=202)

    return await idempotent(request, owner, command, answer)


COMMAND_ERRORS = (400, 401, 403, 404, 409)

routes = [
    Endpoint(
        "/api/runs/{run_id}/gates/{gate_id}",
        resolve_gate,
        "POST",
        Doc(
            "Resolve one of a run's open gates",
            "gates",
            {200: GateResolved},
            body=schemas.ResolveGate,
            errors=COMMAND_ERRORS,
            description="approve or deny a tool or shell approval; answer a question. 409 "
            "unless the gate is open and the run has not ended.",
        ),
    ),
    Endpoint(
        "/api/runs/{run_id}/auto-approve",
        auto_approve,
        "POST",
        Doc(
            "Turn a run's auto-approval of tool gates on or off",
            "gates",
            {200: AutoApproveSet},
            body=schemas.AutoApprove,
            errors=COMMAND_ERRORS,
            description="Turning it on also approves the tool gates open now. 409 once the "
            "run has ended.",
        ),
    ),
    Endpoint(
        "/api/runs/{run_id}/steer",
        steer,
        "POST",
        Doc(
            "Steer a run (or a coordinator's children): stop, redirect, amend",
            "gates",
            {202: DirectiveSent},
            body=schemas.Steer,
            errors=COMMAND_ERRORS,
            description="A coordinator without `target_child_run_id` steers each of its "
            "active children. 409 when no target is active.",
        ),
    ),
]
