"""Who is calling, and may they use this endpoint: bearer keys, or a browser session's
cookie (API.md, "Authentication and ownership").

A bearer key wins over a cookie. A session cookie is looked up once per request, off the
event loop, by `Credentials` (a middleware) before the route runs; `principal` reads what
it found. A state-changing request authenticated by the cookie must carry
`X-Requested-With: runledger`: another site's page can make a browser send the cookie, but
not that header without CORS allowing it. Keys are never accepted in a URL: a query
parameter holding a configured key is refused, by `Credentials`, whatever else the request
carries (it is in someone's logs by now).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.keys import KeyRing, Principal
from adapters.sessions import Session, digest
from api.http.errors import DATABASE_ERRORS, ApiError, handle_database_error
from api.http.requests import path_id, services
from api.service import runners
from api.threads import in_thread

SESSION_COOKIE = "runledger_session"
CSRF_HEADER, CSRF_VALUE = "x-requested-with", "runledger"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: who, the key behind it (hashed: stream slots are per key),
    and whether a session cookie rather than the key itself was presented."""

    principal: Principal
    key_hash: str
    by_cookie: bool


def _bearer(request: HTTPConnection) -> str | None:
    """The token of an `Authorization: Bearer` header ("" when empty); None without one.
    Another scheme (a proxy's Basic auth, say) is not ours: the cookie still counts."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def caller(request: Request) -> Caller:
    """The authenticated caller (401 when there is none)."""
    keys: KeyRing = services(request).keys
    token = _bearer(request)
    if token is not None:
        found = keys.find(token) if token else None
        if found is None:  # a wrong key is not rescued by a cookie
            raise ApiError(
                401, "unauthorized", "A valid API key is required (Authorization: Bearer)."
            )
        return Caller(found, digest(token), by_cookie=False)
    session: Session | None = request.scope.get("state", {}).get("session")
    if session is None:
        raise ApiError(
            401,
            "unauthorized",
            "A valid API key (Authorization: Bearer) or a session (POST /api/session) is required.",
        )
    if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
        raise ApiError(
            403,
            "forbidden",
            "A request authenticated by the session cookie that changes something must "
            "carry the header X-Requested-With: runledger.",
        )
    return Caller(session.principal, session.key_hash, by_cookie=True)


def principal(request: Request, *roles: str) -> Principal:
    """The caller behind the key or session, who must have one of `roles` (401 or 403
    otherwise)."""
    found = caller(request).principal
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
    owner = await in_thread(runners.lease_holders_owner, services(request), run_id, found.name)
    return owner, run_id


KEY_IN_URL = ApiError(
    401,
    "unauthorized",
    "API keys are never accepted in a URL: send Authorization: Bearer, or sign in with "
    "POST /api/session. Treat this key as leaked: rotate it.",
)


class Credentials:
    """Before any /api route (and /metrics, which takes a user's key too): refuses a request
    with a key in its query string (401, on every route, the public ones too), and finds
    the session of one that has a session cookie and no bearer key (off the event loop: it
    reads the database) for `caller`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            scope["path"].startswith("/api/") or scope["path"] == "/metrics"
        ):
            conn = HTTPConnection(scope)
            found: Any = scope["app"].state.services
            if scope.get("query_string") and _key_in(conn.query_params.multi_items(), found.keys):
                await KEY_IN_URL.response()(scope, receive, send)
                return
            token = conn.cookies.get(SESSION_COOKIE)
            if token and _bearer(conn) is None:
                try:
                    session = await in_thread(found.sessions.find, token)
                except DATABASE_ERRORS as exc:  # outside the app's handlers: answer here
                    response = await handle_database_error(Request(scope), exc)
                    await response(scope, receive, send)
                    return
                scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send)


def _key_in(params: list[tuple[str, str]], keys: KeyRing) -> bool:
    """True when a configured key is a query parameter's name or value (also padded, or
    after `Bearer`)."""
    for name, value in params:
        for text in (name, value):
            candidate = text.strip()
            if candidate.lower().startswith("bearer "):
                candidate = candidate[7:].strip()
            if candidate and keys.find(candidate) is not None:
                return True
    return False
