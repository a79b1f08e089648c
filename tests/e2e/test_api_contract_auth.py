"""Keys and roles: a missing or unknown key is 401, the wrong role is 403, health is public."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.contract_helpers import LOG, World, assert_error, fill
from tests.support import ALICE, BOB, OTHER_RUNNER, RUNNER

# Reads of one run: user keys, and the runner key holding the run's lease (see below).
RUN_READS = [
    ("GET", "/api/runs/{main}", None),
    ("GET", "/api/runs/{main}/events", None),
    ("GET", "/api/runs/{main}/stream", None),
]
USER_ENDPOINTS = [
    ("GET", "/api/runs", None),
    ("GET", "/api/runners", None),
    ("POST", "/api/runs", {"task": "x"}),
    ("DELETE", "/api/runs/{main}", None),
    ("POST", "/api/runs/{main}/pause", {}),
    ("POST", "/api/runs/{main}/resume", {}),
    ("POST", "/api/runs/{main}/cancel", {"reason": "r"}),
    ("POST", "/api/runs/{main}/review", {"approved": True}),
    ("POST", "/api/runs/{main}/archive", {}),
    ("POST", "/api/runs/{main}/retry", {}),
    ("POST", "/api/runs/{main}/gates/g1", {"decision": "approve"}),
    ("POST", "/api/runs/{main}/auto-approve", {"enabled": True}),
    ("POST", "/api/runs/{main}/steer", {"kind": "stop", "instruction": "x"}),
    ("GET", "/api/events", None),
    ("GET", "/api/events/stream", None),
    ("GET", "/api/runs/{main}/audit", None),
    ("GET", "/api/audit/checkpoint", None),
    ("GET", "/api/audit/public-key", None),
    ("GET", "/api/audit/proofs/inclusion", None),
    ("GET", "/api/audit/proofs/consistency", None),
    ("DELETE", "/api/session", None),
]
RUNNER_ENDPOINTS = [
    ("POST", "/api/runner/claim", {"runner_id": "r9"}),
    ("POST", "/api/runs/{main}/events", {"fencing_token": "$token", "events": [LOG]}),
    ("POST", "/api/runs/{main}/report", {"fencing_token": "$token", "outcome": "no_changes"}),
]
BAD_CREDENTIALS = {
    "missing": None,
    "unknown-key": "Bearer not-a-key",
    "bearer-without-key": "Bearer",
    "basic-scheme": "Basic a2E6a2E=",
    "no-scheme": ALICE,
    "runner-key-as-basic": f"Basic {RUNNER}",
}


def call(world: World, method: str, path: str, body: Any, authorization: str | None) -> Any:
    """(status, text, headers) of one request with exactly this Authorization header."""
    headers = {} if authorization is None else {"Authorization": authorization}
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = fill(body, world)
    with (
        httpx.Client(base_url=world.server.url, verify=False, timeout=15) as client,
        client.stream(method, path.format(main=world.main), **kwargs) as response,
    ):
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, "<an event stream>", response.headers
        return response.status_code, response.read().decode(), response.headers


ALL_ENDPOINTS = RUN_READS + USER_ENDPOINTS + RUNNER_ENDPOINTS


@pytest.mark.parametrize(
    ("method", "path", "body"), ALL_ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ALL_ENDPOINTS]
)
def test_a_missing_or_unknown_key_is_401_with_www_authenticate(
    world: World, method: str, path: str, body: Any
) -> None:
    before = world.snapshot()
    for label, authorization in BAD_CREDENTIALS.items():
        status, text, headers = call(world, method, path, body, authorization)
        assert status == 401, f"{label}: {status} {text[:300]}"
        assert_error(status, text, headers, 401, "unauthorized")
        assert headers.get("www-authenticate", "").split()[0].lower() == "bearer", (label, headers)
    world.assert_unchanged(before)


@pytest.mark.parametrize(
    ("method", "path", "body", "wrong_keys"),
    [(*e, (RUNNER,)) for e in USER_ENDPOINTS] + [(*e, (ALICE, BOB)) for e in RUNNER_ENDPOINTS],
    ids=[f"{m} {p}" for m, p, _ in USER_ENDPOINTS + RUNNER_ENDPOINTS],
)
def test_the_wrong_role_is_403(
    world: World, method: str, path: str, body: Any, wrong_keys: tuple[str, ...]
) -> None:
    before = world.snapshot()
    for key in wrong_keys:
        status, text, headers = call(world, method, path, body, f"Bearer {key}")
        assert_error(status, text, headers, 403, "forbidden")
    world.assert_unchanged(before)


@pytest.mark.parametrize(
    ("method", "path", "body"), RUN_READS, ids=[f"{m} {p}" for m, p, _ in RUN_READS]
)
def test_a_runner_key_reads_only_the_run_it_holds_and_others_are_404(
    world: World, method: str, path: str, body: Any
) -> None:
    before = world.snapshot()
    status, text, _ = call(world, method, path, body, f"Bearer {RUNNER}")
    assert status == 200, text[:300]  # main's lease is the runner's
    for key, run in [(RUNNER, world.done), (RUNNER, world.bait), (OTHER_RUNNER, world.main)]:
        status, text, headers = call(
            world, method, path.replace("{main}", run), body, f"Bearer {key}"
        )
        assert_error(status, text, headers, 404, "not_found")
    world.assert_unchanged(before)


def test_health_and_server_info_are_public(world: World) -> None:
    kind = "sqlite" if world.server.database_url.startswith("sqlite") else "postgres"
    for authorization in (None, "Bearer not-a-key", f"Bearer {RUNNER}"):
        headers = {} if authorization is None else {"Authorization": authorization}
        with httpx.Client(base_url=world.server.url, headers=headers, verify=False) as client:
            health = client.get("/health")
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "ok"
            info = client.get("/api/server/info")
            assert info.status_code == 200, info.text
            assert info.json()["store"] == kind
            assert isinstance(info.json()["version"], str) and info.json()["version"]


def test_the_bearer_scheme_is_case_insensitive(world: World) -> None:
    with httpx.Client(base_url=world.server.url, verify=False) as client:
        for scheme in ("bearer", "BEARER"):
            answer = client.get("/api/runs", headers={"Authorization": f"{scheme} {ALICE}"})
            assert answer.status_code == 200, (scheme, answer.text)
