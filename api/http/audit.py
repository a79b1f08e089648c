"""Audit routes: a run's audit, the signed checkpoints, the public key, Merkle proofs
(docs/audit.md). User keys only; a run or event of someone else's is not found."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from api.http import auth
from api.http.errors import JSON, invalid
from api.http.models.ops import Checkpoint, ConsistencyProof, InclusionProof, PublicKey, RunAudit
from api.http.openapi import MIN_POSITION, TEXT, Doc, Endpoint, Param
from api.http.requests import MAX_INT, int_param, path_id, read_position, services, with_position
from api.service import audit as use_cases
from api.threads import in_thread


async def run_audit(request: Request) -> Response:
    owner = auth.user(request)
    run_id = path_id(request)
    # Whose run it is comes from the runs view (the events may be the very thing tampered
    # with): ?min_position waits for it, as on every read-model route.
    position = await read_position(request)
    body = await in_thread(use_cases.run_audit, services(request), run_id, owner)
    return with_position(body, position)


async def checkpoint(request: Request) -> Response:
    auth.user(request)
    tree_size = int_param(request, "tree_size", None, 0)
    found = await in_thread(use_cases.get_checkpoint, services(request), tree_size)
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
    body = await in_thread(use_cases.inclusion, services(request), owner, position, tree_size)
    return JSON(body)


async def consistency_proof(request: Request) -> Response:
    auth.user(request)
    first = int_param(request, "from", None, 1)
    second = int_param(request, "to", None, 1)
    if first is None or second is None:
        raise invalid("from and to are both required.", "from" if first is None else "to")
    if first > second:
        raise invalid("from must not be greater than to.", "from")
    return JSON(await in_thread(use_cases.consistency, services(request), first, second))


def _whole(minimum: int) -> dict[str, Any]:
    """The schema of an integer parameter as int_param reads it."""
    return {"type": "integer", "minimum": minimum, "maximum": MAX_INT}


USER_ONLY = (400, 401, 403, 404)  # a runner key is 403 on every audit route

routes = [
    Endpoint(
        "/api/runs/{run_id}/audit",
        run_audit,
        "GET",
        Doc(
            "Audit a run against its chain, the Merkle log and the latest checkpoint",
            "audit",
            {200: RunAudit},
            params=(MIN_POSITION,),
            errors=(*USER_ONLY, 503),
            headers={200: {"X-Position": "the read models' position the answer reflects"}},
            description="Whose run it is is read from the runs read model, not from the "
            "(possibly tampered) events. `first_bad` is present only when `valid` is false "
            '(docs/audit.md, "What a run\'s audit checks").',
        ),
    ),
    Endpoint(
        "/api/audit/checkpoint",
        checkpoint,
        "GET",
        Doc(
            "The latest signed checkpoint (or the one kept at a tree size)",
            "audit",
            {200: (TEXT, Checkpoint)},
            params=(
                Param(
                    "tree_size",
                    _whole(0),
                    "the checkpoint kept at this size (404 if none was signed at it); the "
                    "latest by default",
                ),
            ),
            description="The checkpoint's signed note (c2sp.org signed-note), as text/plain. "
            "With `Accept: application/json`, JSON instead: `{tree_size, root_hash (base64), "
            "signed_note, vkey, signed_at}`. 404 before the first checkpoint.",
        ),
    ),
    Endpoint(
        "/api/audit/public-key",
        public_key,
        "GET",
        Doc(
            "The key checkpoints are signed with",
            "audit",
            {200: PublicKey},
            errors=(401, 403),
            description="The same object is `audit` in the public GET /api/server/info.",
        ),
    ),
    Endpoint(
        "/api/audit/proofs/inclusion",
        inclusion_proof,
        "GET",
        Doc(
            "Prove one of your events is in a tree of the log",
            "audit",
            {200: InclusionProof},
            params=(
                Param("position", _whole(1), "the event's global position", required=True),
                Param(
                    "tree_size", _whole(1), "the tree's size; by default the latest checkpoint's"
                ),
            ),
            description="404 when the event is someone else's or missing, is not (yet) in a "
            "tree of that size, or the log is not that large yet.",
        ),
    ),
    Endpoint(
        "/api/audit/proofs/consistency",
        consistency_proof,
        "GET",
        Doc(
            "Prove a tree of the log extends an earlier one",
            "audit",
            {200: ConsistencyProof},
            params=(
                Param("from", _whole(1), "the earlier tree's size (at most `to`)", required=True),
                Param("to", _whole(1), "the later tree's size", required=True),
            ),
            description="400 unless 1 <= from <= to; 404 when the log has fewer than `to` leaves.",
        ),
    ),
]
