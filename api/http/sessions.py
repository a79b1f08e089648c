"""Browser sessions: `POST /api/session {key}` sets the cookie, `DELETE /api/session` ends
it (api/http/auth.py uses it; adapters/sessions.py stores it)."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.responses import Response

from api.http import auth
from api.http.errors import ApiError
from api.http.models import ErrorBody
from api.http.openapi import Doc, Endpoint
from api.http.requests import parse, services
from api.http.schemas import SessionStart
from api.threads import in_thread


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
    # Another site's page can post a form or a no-cors fetch here (same-site pages share
    # cookies with ours) to sign the browser in as someone else; it cannot send JSON's
    # content type or our header without CORS allowing it.
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and request.headers.get(auth.CSRF_HEADER) != auth.CSRF_VALUE:
        raise ApiError(
            400,
            "invalid_request",
            "Sign in with a JSON body (Content-Type: application/json).",
            errors=[{"field": "Content-Type", "message": "must be application/json"}],
        )
    body = await parse(request, SessionStart)
    found = services(request)
    principal = found.keys.find(body.key)
    if principal is None:
        raise ApiError(401, "unauthorized", "Unknown key.")
    if principal.role != "user":
        raise ApiError(403, "forbidden", "Sessions are for user keys.")
    hours = found.config.session_hours
    token = await in_thread(found.sessions.start, body.key, hours)
    response = Response(status_code=204)
    response.set_cookie(
        auth.SESSION_COOKIE,
        token,
        max_age=int(hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request, found.config.cookie_secure),
    )
    return response


def _secure(request: Request, setting: str) -> bool:
    """`Secure` on the cookie: RUNLEDGER_COOKIE_SECURE=true|false, or auto: on, unless the
    request came over plain HTTP to a loopback address."""
    if setting in ("true", "false"):
        return setting == "true"
    return request.url.scheme == "https" or not _loopback(request)


async def end_session(request: Request) -> Response:
    caller = auth.caller(request)  # 401 without a session; 403 without the header
    if caller.principal.role != "user":
        raise ApiError(403, "forbidden", "Sessions are for user keys.")
    if caller.by_cookie:
        token = request.cookies.get(auth.SESSION_COOKIE, "")
        await in_thread(services(request).sessions.end, token)
    response = Response(status_code=204)
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


routes = [
    Endpoint(
        "/api/session",
        start_session,
        "POST",
        Doc(
            "Sign in: exchange a user key for a session cookie",
            "sessions",
            # Public, yet it answers 401 and 403 (which a public route's errors leave out).
            {204: None, 401: ErrorBody, 403: ErrorBody},
            auth=(),
            body=SessionStart,
            errors=(400, 413),
            headers={
                204: {
                    "Set-Cookie": f"{auth.SESSION_COOKIE}=<token>; HttpOnly; SameSite=Strict; "
                    "Path=/; Max-Age=RUNLEDGER_SESSION_HOURS (12) in seconds; Secure unless "
                    "served on a loopback address"
                }
            },
            description="No key needed: the key travels in the body. 401 unauthorized for "
            "a key this server does not know, 403 forbidden for a runner's key (sessions "
            "are for user keys). The cookie then authenticates like its key; its writes "
            "also need X-Requested-With: runledger.",
        ),
    ),
    Endpoint(
        "/api/session",
        end_session,
        "DELETE",
        Doc(
            "Sign out: end the session and clear its cookie",
            "sessions",
            {204: None},
            errors=(401, 403),
            headers={204: {"Set-Cookie": f'{auth.SESSION_COOKIE}=""; Max-Age=0 (cleared)'}},
            description="With the session cookie, which it ends everywhere (and, as for any "
            "write by the cookie, the header X-Requested-With: runledger, else 403). With a "
            "bearer key it only clears the cookie.",
        ),
    ),
]
