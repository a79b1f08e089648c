"""Operations routes: health, server info, diagnostics."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import auth
from api.errors import JSON

VERSION = "0.1.0"


async def health(request: Request) -> Response:
    state = request.app.state
    try:
        head = await run_in_threadpool(state.db.head)
    except Exception as exc:  # the database is down: say so, never a 500
        return JSON({"status": "degraded", "database": f"unreachable: {type(exc).__name__}"}, 503)
    lag = head - state.projection.position
    return JSON({"status": "ok", "head": head, "read_model_lag": lag})


async def server_info(request: Request) -> Response:
    store = request.app.state.runtime.settings.kind
    return JSON({"version": VERSION, "store": store})


async def diagnostics(request: Request) -> Response:
    auth.user(request)
    state = request.app.state
    head = await run_in_threadpool(state.db.head)
    body: dict[str, Any] = {
        "head_position": head,
        "read_models": {
            "runs": {"position": state.projection.position, "lag": head - state.projection.position}
        },
        "change_feed": {"position": state.feed.position, "lag": head - state.feed.position},
        "subscribers": len(state.hub.subscribers),
        "subscribers_dropped": state.hub.dropped,
        "worker": {"role": state.config.role, "leader": state.runtime.leading},
    }
    return JSON(body)


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/api/server/info", server_info, methods=["GET"]),
    Route("/api/diagnostics", diagnostics, methods=["GET"]),
]
