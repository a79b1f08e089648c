"""Prometheus metrics: events by type, command latency, SSE subscribers, read-model lag."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http import auth
from api.http.openapi import TEXT, Doc, Endpoint
from api.http.requests import services
from api.service.metrics import Metrics


class CommandTimer:
    """ASGI middleware timing every command request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.observe_command(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)


async def metrics_endpoint(request: Request) -> Response:
    """The exposition text; a user key is needed unless RUNLEDGER_METRICS_PUBLIC=true (the
    counts are global, across every user's runs)."""
    state = services(request)
    if not state.config.metrics_public:
        auth.user(request)
    lag = max(state.feed.position - state.projection.position, 0)
    text = state.metrics.render(len(state.hub.subscribers), lag)
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


routes = [
    Endpoint(
        "/metrics",
        metrics_endpoint,
        "GET",
        Doc(
            "Prometheus metrics",
            "operations",
            {200: TEXT},
            errors=(401, 403),
            description="The Prometheus text exposition format (version 0.0.4): events by "
            "type, command latency, SSE subscribers, read-model lag. The counts are global, "
            "across every user's runs, so a user key is needed (Authorization: Bearer; a "
            "session cookie is not read here), unless RUNLEDGER_METRICS_PUBLIC=true makes "
            "it public.",
        ),
    )
]
