"""Browser sessions and CORS (API.md, "Authentication and ownership"), against a real
`runledger serve` on SQLite and PostgreSQL: the cookie from `POST /api/session` reads and
streams like its key, writes only with `X-Requested-With: runledger`, ends with `DELETE`,
when it expires, and when its key is no longer configured; keys are refused in any query
parameter; CORS headers go to the allowed origins only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.runs_helpers import error, ok, sse, submit
from tests.support import ALICE, BOB, KEYS, RUNNER, Server

CSRF = {"X-Requested-With": "runledger"}


@contextmanager
def browser(server: Server, key: str = ALICE) -> Iterator[httpx.Client]:
    """A client with no Authorization header, signed in: it holds the session cookie."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        signed_in = client.post("/api/session", json={"key": key})
        assert signed_in.status_code == 204, signed_in.text
        assert client.cookies.get("runledger_session")
        yield client


def test_sign_in_sets_a_strict_http_only_cookie_and_refuses_bad_keys(srv: Server) -> None:
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        answer = client.post("/api/session", json={"key": ALICE})
        assert answer.status_code == 204 and answer.content == b""
        cookie = answer.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert cookie.startswith("runledger_session=")
        assert {"httponly", "path", "max-age"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert "Max-Age=43200" in cookie  # 12 hours, the default
        assert "secure" not in attributes  # served on loopback: plain HTTP is fine
        assert ALICE not in cookie  # the cookie is a token of its own, not the key

        error(client.post("/api/session", json={"key": "not-a-key"}), 401, "unauthorized")
        error(client.post("/api/session", json={"key": RUNNER}), 403, "forbidden")
        for body in ({}, {"key": 7}, {"key": ""}, {"key": ALICE, "extra": 1}):
            error(client.post("/api/session", json=body), 400, "invalid_request")
        bad = client.post("/api/session", content=b"{oops")
        error(bad, 400, "invalid_request")


def test_the_cookie_reads_and_streams_as_its_key_and_writes_only_with_the_header(
    srv: Server,
) -> None:
    with srv.client(ALICE) as alice, srv.client(BOB) as bob, browser(srv) as page:
        mine = submit(alice)["run_id"]
        second = submit(bob)
        theirs = second["run_id"]
        listed = ok(page.get("/api/runs", params={"min_position": second["position"]}))
        ids = {run["run_id"] for run in listed["items"]}
        assert mine in ids and theirs not in ids
        assert (
            ok(page.get(f"/api/runs/{mine}", params={"min_position": second["position"]}))["run_id"]
            == mine
        )
        error(page.get(f"/api/runs/{theirs}"), 404, "not_found")
        with sse(page, f"/api/runs/{mine}/stream") as (_, frames):
            assert next(frames)["event"] == "run.submitted"

        before = len(ok(alice.get(f"/api/runs/{mine}/events"))["events"])
        forged = page.post(f"/api/runs/{mine}/cancel", json={})
        error(forged, 403, "forbidden")
        wrong = page.post(f"/api/runs/{mine}/cancel", json={}, headers={"X-Requested-With": "x"})
        error(wrong, 403, "forbidden")
        error(page.post("/api/runs", json={"task": "forged"}), 403, "forbidden")
        assert len(ok(alice.get(f"/api/runs/{mine}/events"))["events"]) == before  # unchanged

        ok(page.post(f"/api/runs/{mine}/cancel", json={}, headers=CSRF))
        created = page.post("/api/runs", json={"task": "from the page"}, headers=CSRF)
        assert created.status_code == 202, created.text
        # the cookie is a user's: the runner endpoints stay closed to it
        claim = page.post("/api/runner/claim", json={"runner_id": "x"}, headers=CSRF)
        error(claim, 403, "forbidden")


def test_a_bearer_key_wins_over_the_cookie(srv: Server) -> None:
    with browser(srv, BOB) as page, srv.client(ALICE) as alice:
        made = submit(alice)
        mine, seen = made["run_id"], {"min_position": made["position"]}
        headers = {"Authorization": f"Bearer {ALICE}"}
        assert ok(page.get(f"/api/runs/{mine}", headers=headers, params=seen))["run_id"] == mine
        error(page.get(f"/api/runs/{mine}", params=seen), 404, "not_found")  # bob's cookie
        wrong = page.get(f"/api/runs/{mine}", headers={"Authorization": "Bearer nope"})
        error(wrong, 401, "unauthorized")  # a bad key is not rescued by the cookie
        # a bearer-authenticated write needs no header: no browser sends a key by itself
        ok(page.post(f"/api/runs/{mine}/cancel", json={}, headers=headers))


def test_sign_out_ends_the_session_everywhere(srv: Server) -> None:
    with browser(srv) as page:
        token = page.cookies["runledger_session"]
        error(page.delete("/api/session"), 403, "forbidden")  # the cookie, without the header
        ok(page.get("/api/runs"))
        out = page.delete("/api/session", headers=CSRF)
        assert out.status_code == 204, out.text
        assert "max-age=0" in out.headers["set-cookie"].lower()
        assert not page.cookies.get("runledger_session")
    with httpx.Client(base_url=srv.url, timeout=30, cookies={"runledger_session": token}) as old:
        error(old.get("/api/runs"), 401, "unauthorized")  # the token itself is dead
        error(old.delete("/api/session", headers=CSRF), 401, "unauthorized")
    with httpx.Client(base_url=srv.url, timeout=30, cookies={"runledger_session": "x" * 40}) as c:
        error(c.get("/api/runs"), 401, "unauthorized")


def test_a_session_expires_and_ends_with_its_key(store_url: str, tmp_path: Path) -> None:
    short = Server(store_url, tmp_path / "a", RUNLEDGER_SESSION_HOURS=str(2 / 3600)).start()
    try:
        with browser(short) as page:
            again = httpx.post(f"{short.url}/api/session", json={"key": ALICE})
            assert "Max-Age=2;" in again.headers["set-cookie"], again.headers
            ok(page.get("/api/runs"))
            time.sleep(2.5)
            error(page.get("/api/runs"), 401, "unauthorized")
    finally:
        short.kill()

    first = Server(store_url, tmp_path / "b").start()
    try:
        with browser(first) as page:
            ok(page.get("/api/runs"))
            cookies = {"runledger_session": page.cookies["runledger_session"]}
    finally:
        first.kill()
    without_alice = ",".join(k for k in KEYS.split(",") if not k.startswith(f"{ALICE}="))
    second = Server(store_url, tmp_path / "c", RUNLEDGER_API_KEYS=without_alice).start()
    try:
        with httpx.Client(base_url=second.url, timeout=30, cookies=cookies) as again:
            error(again.get("/api/runs"), 401, "unauthorized")
    finally:
        second.kill()
    back = Server(store_url, tmp_path / "d").start()  # the key is configured again: it works
    try:
        with httpx.Client(base_url=back.url, timeout=30, cookies=cookies) as again:
            ok(again.get("/api/runs"))
    finally:
        back.kill()


def test_a_session_made_by_one_process_works_and_ends_on_another(
    store_url: str, tmp_path: Path
) -> None:
    one = Server(store_url, tmp_path / "one").start()
    two = Server(store_url, tmp_path / "two").start()
    try:
        with browser(one) as page:
            token = page.cookies["runledger_session"]
            cookies = {"runledger_session": token}
            with httpx.Client(base_url=two.url, timeout=30, cookies=cookies) as elsewhere:
                ok(elsewhere.get("/api/runs"))
                assert page.delete("/api/session", headers=CSRF).status_code == 204
                error(elsewhere.get("/api/runs"), 401, "unauthorized")
    finally:
        one.kill()
        two.kill()


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs",
        "/api/runs/00000000-0000-0000-0000-000000000000/stream",
        "/api/events",
        "/api/server/info",
    ],
)
def test_a_key_in_any_query_parameter_is_refused(srv: Server, path: str) -> None:
    with httpx.Client(base_url=srv.url, timeout=30) as anonymous, srv.client(BOB) as bob:
        for name in ("key", "api_key", "token", "after", "anything"):
            refused = anonymous.get(path, params={name: ALICE})
            body = error(refused, 401, "unauthorized")
            assert "URL" in body["detail"]
            assert refused.headers["www-authenticate"] == "Bearer"
            # even beside a valid key: the one in the URL has leaked into logs by now
            error(bob.get(path, params={name: ALICE}), 401, "unauthorized")
        error(
            anonymous.post("/api/session", params={"k": ALICE}, json={"key": ALICE}),
            401,
            "unauthorized",
        )
        # an ordinary value is no key
        if path == "/api/runs":
            ok(bob.get(path, params={"status": "pending"}))


def test_cors_is_off_by_default_and_allows_only_the_configured_origins(
    srv: Server, store_url: str, tmp_path: Path
) -> None:
    allowed, other = "http://ui.example:8080", "http://evil.example"
    with srv.client(ALICE) as plain:
        answer = plain.get("/api/runs", headers={"Origin": allowed})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers
    srv.kill()

    cors = Server(store_url, tmp_path / "cors", RUNLEDGER_CORS_ORIGINS=f"{allowed}, http://b.x")
    cors.start()
    try:
        with cors.client(ALICE) as alice, httpx.Client(base_url=cors.url, timeout=30) as raw:
            got = alice.get("/api/runs", headers={"Origin": allowed})
            assert got.status_code == 200
            assert got.headers["access-control-allow-origin"] == allowed
            assert "access-control-allow-credentials" not in got.headers  # bearer keys only
            assert "x-position" in got.headers["access-control-expose-headers"].lower()

            denied = alice.get("/api/runs", headers={"Origin": other})
            assert denied.status_code == 200  # the server answers; the browser withholds it
            assert not any(h.startswith("access-control-") for h in denied.headers)

            preflight = {
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            }
            ok_preflight = raw.options("/api/runs", headers={"Origin": allowed, **preflight})
            assert ok_preflight.status_code == 200, ok_preflight.text
            assert ok_preflight.headers["access-control-allow-origin"] == allowed
            methods = ok_preflight.headers["access-control-allow-methods"]
            assert "POST" in methods
            assert "authorization" in ok_preflight.headers["access-control-allow-headers"].lower()

            bad_preflight = raw.options("/api/runs", headers={"Origin": other, **preflight})
            assert bad_preflight.status_code == 400
            assert "access-control-allow-origin" not in bad_preflight.headers
    finally:
        cors.kill()


def test_sign_in_takes_json_only_so_no_other_site_can_sign_a_browser_in(srv: Server) -> None:
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        form = client.post("/api/session", data={"key": ALICE})  # what a foreign form sends
        error(form, 400, "invalid_request")
        text = client.post(
            "/api/session", content=f'{{"key": "{ALICE}"}}', headers={"Content-Type": "text/plain"}
        )
        error(text, 400, "invalid_request")  # a no-cors fetch's kind of body
        assert "runledger_session" not in client.cookies
        ours = client.post(
            "/api/session",
            content=f'{{"key": "{ALICE}"}}',
            headers={"Content-Type": "text/plain", "X-Requested-With": "runledger"},
        )
        assert ours.status_code == 204  # the dashboard's own header is enough


def test_another_authorization_scheme_leaves_the_cookie_in_charge(srv: Server) -> None:
    with browser(srv) as page:
        basic = {"Authorization": "Basic dXNlcjpwYXNz"}  # a proxy's own sign-in, passed on
        ok(page.get("/api/runs", headers=basic))


def test_cookie_secure_can_be_set_by_the_operator(store_url: str, tmp_path: Path) -> None:
    server = Server(store_url, tmp_path / "data", RUNLEDGER_COOKIE_SECURE="true").start()
    try:
        answer = httpx.post(f"{server.url}/api/session", json={"key": ALICE})
        assert answer.status_code == 204
        assert "secure" in answer.headers["set-cookie"].lower()
    finally:
        server.kill()
