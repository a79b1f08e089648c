"""Bearer keys and roles: who is calling, and may they use this endpoint."""

from __future__ import annotations

from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from adapters.keys import KeyRing, Principal
from api.http.errors import ApiError
from api.http.requests import path_id, services
from api.service import runners


def principal(request: Request, *roles: str) -> Principal:
    """The caller behind the bearer key, who must have one of `roles` (401 or 403
    otherwise)."""
    keys: KeyRing = services(request).keys
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    found = keys.find(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if found is None:
        raise ApiError(401, "unauthorized", "A valid API key is required (Authorization: Bearer).")
    if found.role not in roles:
        raise ApiError(403, "forbidden", f"This endpoint is for {' or '.join(roles)} keys.")
    return found


def user(request: Request) -> str:
    """The name of the calling user (role `user`)."""
    return principal(request, "user").name


def runner(request: Request) -> str:
    """The name of the calling runner (role `runner`)."""
    return principal(request, "runner").name


async def run_reader(request: Request) -> tuple[str, UUID]:
    """(whose run it is, the run in the path) for a read of one run: a user reads their own
    runs; a runner key only the run whose current lease it holds (404 for any other)."""
    found = principal(request, "user", "runner")
    run_id = path_id(request)
    if found.role == "user":
        return found.name, run_id
    owner = await run_in_threadpool(
        runners.lease_holders_owner, services(request), run_id, found.name
    )
    return owner, run_id
