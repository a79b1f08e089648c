"""Browser sessions: `POST /api/session {key}` sets the cookie, `DELETE /api/session` ends
it (api/http/auth.py uses it; adapters/sessions.py stores it)."""

from __future__ import annotations

import ipaddress

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http import auth
from api.http.errors import ApiError
from api.http.requests import parse, services
from api.http.schemas import SessionStart


def _loopback(request: Request) -> bool:
    """True when the request came in on a loopback address of this server (the socket's,
    not the Host header the client chose): no TLS there, so no `Secure`."""
    server = request.scope.get("server")
    if not server:
        return False
    try:
        return ipaddress.ip_address(str(server[0]).strip("[]")).is_loopback
    except ValueError:
        return False


async def start_session(request: Request) -> Response:
    body = await parse(request, SessionStart)
    found = services(request)
    principal = found.keys.find(body.key)
    if principal is None:
        raise ApiError(401, "unauthorized", "Unknown key.")
    if principal.role != "user":
        raise ApiError(403, "forbidden", "Sessions are for user keys.")
    hours = found.config.session_hours
    token = await run_in_threadpool(found.sessions.start, body.key, hours)
    response = Response(status_code=204)
    response.set_cookie(
        auth.SESSION_COOKIE,
        token,
        max_age=int(hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or not _loopback(request),
    )
    return response


async def end_session(request: Request) -> Response:
    caller = auth.caller(request)  # 401 without a session; 403 without the header
    if caller.by_cookie:
        token = request.cookies.get(auth.SESSION_COOKIE, "")
        await run_in_threadpool(services(request).sessions.end, token)
    response = Response(status_code=204)
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


routes = [
    Route("/api/session", start_session, methods=["POST"]),
    Route("/api/session", end_session, methods=["DELETE"]),
]
