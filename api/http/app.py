"""create_app: the Starlette application over the process's services (api/service/bootstrap.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from api.config import Config
from api.http import (
    audit,
    auth,
    board,
    dashboard,
    docs,
    errors,
    events,
    files,
    gates,
    ops,
    plans,
    projects,
    runners,
    runs,
    sessions,
    usage,
)
from api.http import metrics as metrics_routes
from api.http.metrics import CommandTimer
from api.http.sse import SERVER_SEND
from api.service import bootstrap
from api.service.metrics import Metrics
from domain.errors import DomainError

# What a page on an allowed origin may send: bearer keys, never cookies (no credentials).
CORS_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Last-Event-ID",
    "X-Min-Position",
)


class AllowedOrigins(CORSMiddleware):
    """Starlette's CORS, which also sends its expose list to origins it does not allow:
    here a request from another origin passes through with no CORS header at all."""

    async def simple_response(
        self, scope: Scope, receive: Receive, send: Send, request_headers: Headers
    ) -> None:
        if not self.is_allowed_origin(request_headers["origin"]):
            await self.app(scope, receive, send)
            return
        await super().simple_response(scope, receive, send, request_headers)


class App(Starlette):
    """Starlette, which also hands a request the server's own `send` (scope[SERVER_SEND]),
    before any middleware wraps it: an SSE stream writes its live frames there
    (api/http/sse.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope[SERVER_SEND] = send
        try:
            await super().__call__(scope, receive, send)
        finally:
            # uvicorn's request cycle holds the scope and the send holds the cycle: left
            # in, the two would keep each other until a full garbage collection.
            scope.pop(SERVER_SEND, None)


def create_app(config: Config) -> Starlette:
    """The whole engine in one ASGI app: API, projections, change feed and SSE hub."""

    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.services = await bootstrap.start(config, metrics)
        try:
            yield
        finally:
            await bootstrap.stop(app.state.services)

    # A worker process answers only the operations routes: it is not behind the balancer.
    # Starlette tries the routes in order: the runners' (output and reports, the busiest
    # commands) come first. No other route's path matches theirs, so order decides nothing
    # else (a same path with another method is tried on).
    api_routes = [
        *runners.routes,
        *dashboard.routes,
        *sessions.routes,
        *docs.routes,
        *projects.routes,
        *board.routes,
        *runs.routes,
        *plans.routes,
        *events.routes,
        *files.routes,
        *gates.routes,
        *audit.routes,
        *usage.routes,
    ]
    app = App(
        routes=[
            *ops.routes,
            *metrics_routes.routes,
            *(api_routes if config.role != "worker" else []),
        ],
        lifespan=lifespan,
        exception_handlers={
            errors.ApiError: errors.handle_api_error,
            DomainError: errors.handle_domain_error,
            HTTPException: errors.handle_http_error,
            **dict.fromkeys(errors.DATABASE_ERRORS, errors.handle_database_error),
            Exception: errors.handle_internal,
        },
    )
    app.add_middleware(CommandTimer, metrics=metrics)
    app.add_middleware(auth.Credentials)
    if config.cors_origins:  # outermost: a preflight is answered before anything else
        app.add_middleware(
            AllowedOrigins,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=list(CORS_HEADERS),
            expose_headers=["Location", "Retry-After", "WWW-Authenticate", "X-Position"],
            max_age=600,
        )
    return app
