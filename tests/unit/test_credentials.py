"""The Credentials middleware (api/http/auth.py) on its own, with stand-in services: a
database that is away while it looks a session up is a 503 with Retry-After (it runs
outside the app's error handlers), and keys in a query string are found however they are
dressed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from adapters.keys import KeyRing, Principal
from adapters.outage import DatabaseUnavailable
from api.http.auth import SESSION_COOKIE, Credentials


class AwaySessions:
    def find(self, token: str) -> Any:
        raise DatabaseUnavailable("the database is away")


def app() -> Starlette:
    async def hello(_: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    application = Starlette(routes=[Route("/api/runs", hello)])
    application.add_middleware(Credentials)
    application.state.services = SimpleNamespace(
        keys=KeyRing({"k-secret-1": Principal("alice", "user")}), sessions=AwaySessions()
    )
    return application


def get(path: str, cookies: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app())
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", cookies=cookies
        ) as client:
            return await client.get(path)

    return asyncio.run(go())


def test_a_session_lookup_while_the_database_is_away_is_503_with_retry_after() -> None:
    answer = get("/api/runs", cookies={SESSION_COOKIE: "some-token"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "unavailable"
    assert answer.headers["retry-after"]


def test_a_key_anywhere_in_the_query_string_is_refused() -> None:
    for query in (
        "k-secret-1",  # as a parameter's name
        "key=k-secret-1",
        "key=%20k-secret-1%20",
        "auth=Bearer%20k-secret-1",
        "a=1&b=k-secret-1",
    ):
        answer = get(f"/api/runs?{query}")
        assert answer.status_code == 401, query
        assert "URL" in answer.json()["detail"]
    assert get("/api/runs?key=not-a-key").status_code == 200
