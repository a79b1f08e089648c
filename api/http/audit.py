"""Audit routes: a run's audit, the signed checkpoints, the public key, Merkle proofs
(docs/audit.md). User keys only; a run or event of someone else's is not found."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.http import auth
from api.http.errors import JSON, invalid
from api.http.requests import int_param, path_id, read_position, services, with_position
from api.service import audit as use_cases


async def run_audit(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    # Whose run it is comes from the runs view (the events may be the very thing tampered
    # with): ?min_position waits for it, as on every read-model route.
    position = await read_position(request)
    body = await run_in_threadpool(use_cases.run_audit, services(request), run_id, owner)
    return with_position(body, position)


async def checkpoint(request: Request) -> Response:
    auth.user(request)
    tree_size = int_param(request, "tree_size", None, 0)
    found = await run_in_threadpool(use_cases.get_checkpoint, services(request), tree_size)
    if "application/json" in request.headers.get("accept", ""):
        return JSON(use_cases.checkpoint_document(found))
    return PlainTextResponse(found.note)


async def public_key(request: Request) -> Response:
    auth.user(request)
    return JSON(use_cases.public_key(services(request)))


async def inclusion_proof(request: Request) -> Response:
    owner = auth.user(request)
    position = int_param(request, "position", None, 1)
    if position is None:
        raise invalid("position is required.", "position")
    tree_size = int_param(request, "tree_size", None, 1)
    body = await run_in_threadpool(
        use_cases.inclusion, services(request), owner, position, tree_size
    )
    return JSON(body)


async def consistency_proof(request: Request) -> Response:
    auth.user(request)
    first = int_param(request, "from", None, 1)
    second = int_param(request, "to", None, 1)
    if first is None or second is None:
        raise invalid("from and to are both required.", "from" if first is None else "to")
    if first > second:
        raise invalid("from must not be greater than to.", "from")
    return JSON(await run_in_threadpool(use_cases.consistency, services(request), first, second))


routes = [
    Route("/api/runs/{run_id}/audit", run_audit, methods=["GET"]),
    Route("/api/audit/checkpoint", checkpoint, methods=["GET"]),
    Route("/api/audit/public-key", public_key, methods=["GET"]),
    Route("/api/audit/proofs/inclusion", inclusion_proof, methods=["GET"]),
    Route("/api/audit/proofs/consistency", consistency_proof, methods=["GET"]),
]
