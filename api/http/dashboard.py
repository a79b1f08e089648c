"""The dashboard (API.md, "Dashboard"): a page served at `/` and its native ES modules under
`/ui/` (api/static/dashboard), with no build step. It signs in with a user key (a session
cookie) and does everything with ordinary API calls."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from api.http.openapi import HTML, Doc, Endpoint

PAGE = Path(__file__).resolve().parent.parent / "static" / "dashboard"
# The page and its modules change with the server: a browser revalidates them every time.
NO_STALE = {"Cache-Control": "no-cache"}


class Assets(StaticFiles):
    """The dashboard's files, revalidated on every load (ETag: cheap when unchanged)."""

    def file_response(self, *args: object, **kwargs: object) -> Response:
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers.update(NO_STALE)
        return response


async def page(_: Request) -> Response:
    return FileResponse(PAGE / "index.html", media_type="text/html", headers=NO_STALE)


routes = [
    Endpoint(
        "/",
        page,
        "GET",
        Doc(
            "The dashboard, for people who supervise runs",
            "dashboard",
            {200: HTML},
            auth=(),
            errors=(),
            description="Signs in with a user key (POST /api/session); everything it shows "
            "comes from the API.",
        ),
    ),
    Mount("/ui", Assets(directory=PAGE), name="dashboard"),
]
