"""create_app: the Starlette application over the process's services (api/service/bootstrap.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from api.config import Config
from api.http import (
    audit,
    board,
    errors,
    events,
    files,
    gates,
    ops,
    plans,
    projects,
    runners,
    runs,
    usage,
)
from api.http import metrics as metrics_routes
from api.http.metrics import CommandTimer
from api.service import bootstrap
from api.service.metrics import Metrics
from domain.errors import DomainError


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
    api_routes = [
        *projects.routes,
        *board.routes,
        *runs.routes,
        *plans.routes,
        *runners.routes,
        *events.routes,
        *files.routes,
        *gates.routes,
        *audit.routes,
        *usage.routes,
    ]
    app = Starlette(
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
    return app
