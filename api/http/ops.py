"""Operations routes: health, server info, diagnostics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adapters.outage import RETRY_AFTER_SECONDS, is_unavailable
from api.http import auth
from api.http.errors import JSON
from api.http.models import ErrorBody
from api.http.models.ops import Degraded, Diagnostics, Healthy, ServerInfo
from api.http.openapi import Doc, Endpoint
from api.http.requests import services
from api.service import audit
from api.threads import in_thread
from projections.rebuilding import status

VERSION = "0.1.0"
HEALTH_TIMEOUT = 1.0  # seconds: an outage shows on /health well within 2 s
log = logging.getLogger("runledger.api")


async def health(request: Request) -> Response:
    """Public: ok, or degraded within HEALTH_TIMEOUT when the database does not answer.

    It says nothing else (positions and lag are in the keyed /api/diagnostics). The probe
    runs on the event loop's own executor, not the request thread pool, so requests stuck
    on the database cannot delay it.
    """
    db = services(request).db
    try:
        await asyncio.wait_for(asyncio.to_thread(db.ping, HEALTH_TIMEOUT), HEALTH_TIMEOUT + 0.5)
    except Exception as exc:  # the database is away: say so, never a 500
        if not isinstance(exc, TimeoutError) and not is_unavailable(exc):
            log.error("health probe failed", exc_info=exc)
        body = {"status": "degraded", "detail": "The database is unavailable."}
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return JSON(body, status_code=503, headers=headers)
    return JSON({"status": "ok"})


async def server_info(request: Request) -> Response:
    found = services(request)
    store = found.runtime.settings.kind
    return JSON({"version": VERSION, "store": store, "audit": audit.public_key(found)})


async def diagnostics(request: Request) -> Response:
    auth.user(request)
    state = services(request)
    names = [p.name for p in state.runtime.projection.projections]
    head, found = await in_thread(status, state.db, names)
    models: dict[str, Any] = {
        s.name: {"position": s.position, "lag": s.lag, **({"size": s.size} if s.size else {})}
        for s in found
        if s.position is not None and s.lag is not None
    }
    body: dict[str, Any] = {
        "head_position": head,
        "read_models": models,
        "change_feed": {"position": state.feed.position, "lag": head - state.feed.position},
        "subscribers": len(state.hub.subscribers),
        "subscribers_dropped": state.hub.dropped,
        "worker": {"role": state.config.role, "leader": state.runtime.leading},
    }
    return JSON(body)


routes = [
    Endpoint(
        "/health",
        health,
        "GET",
        Doc(
            "Is the server up and its database reachable",
            "operations",
            {200: Healthy, 503: Degraded},
            auth=(),
            errors=(),
            headers={503: {"Retry-After": "seconds before trying again"}},
            description="Public, and says nothing else: positions and lag are in the keyed "
            "GET /api/diagnostics. 503 within about 1.5 s when the database does not answer.",
        ),
    ),
    Endpoint(
        "/api/server/info",
        server_info,
        "GET",
        Doc(
            "This server's version, store and checkpoint signing key",
            "operations",
            # 401 for a key in the query string, refused on every /api route, public or not.
            {200: ServerInfo, 401: ErrorBody},
            auth=(),
            errors=(),
            description="Public: no key needed. As on every /api route, a request with a "
            "configured key in its query string is refused (401): the key has leaked.",
        ),
    ),
    Endpoint(
        "/api/diagnostics",
        diagnostics,
        "GET",
        Doc(
            "This process's positions, lag, streams and role",
            "operations",
            {200: Diagnostics},
            errors=(401, 403, 503),
        ),
    ),
]
