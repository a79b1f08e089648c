"""The OpenAPI document (`GET /api/openapi.json`, generated once per process from the app's
routes: api/http/openapi.py) and a page that renders it for people (`GET /api/docs`: Swagger
UI's own static bundle, vendored in api/static/swagger-ui, served by runledger itself: no
CDN, no internet needed)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from api.http import auth
from api.http.openapi import HTML, Doc, Endpoint, OpenApiDocument, document

STATIC = Path(__file__).resolve().parent.parent / "static"


def server_version() -> str:
    """The installed package's version."""
    try:
        return version("runledger")
    except PackageNotFoundError:  # run from a checkout without installing
        return "0+unknown"


async def openapi_json(request: Request) -> Response:
    auth.principal(request, "user", "runner")
    cached: bytes | None = getattr(request.app.state, "openapi", None)
    if cached is None:
        cached = orjson.dumps(document(request.app.routes, server_version()))
        request.app.state.openapi = cached
    return Response(cached, media_type="application/json")


async def docs_page(_: Request) -> Response:
    return FileResponse(STATIC / "docs" / "index.html", media_type="text/html")


routes = [
    Endpoint(
        "/api/openapi.json",
        openapi_json,
        "GET",
        Doc(
            "This document (OpenAPI 3.1)",
            "operations",
            {200: OpenApiDocument},
            auth=("user", "runner"),
            errors=(401,),
        ),
    ),
    Endpoint(
        "/api/docs",
        docs_page,
        "GET",
        Doc(
            "This document, rendered for people (Swagger UI)",
            "operations",
            {200: HTML},
            auth=(),
            errors=(),
            description="Signs in with a user key (a session) when the browser has none.",
        ),
    ),
    Mount(
        "/api/docs/assets",
        StaticFiles(directory=STATIC / "swagger-ui"),
        name="docs-assets",
    ),
    Mount("/api/docs/page", StaticFiles(directory=STATIC / "docs"), name="docs-page"),
]
