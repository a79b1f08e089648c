"""Shared pieces of the HTTP contract tests: alice's world on a shared server, the error checks.

The contract modules (`test_api_contract_*.py`) share one server per store per module (the
`shared_server` and `world` fixtures in `conftest.py`): their requests must be refused (or, for a
few edge values, may be accepted but must not crash). Every refused request is checked for its
status and JSON error shape, and for having changed nothing: no new event anywhere in alice's
log, and the claimed run's last sequence unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support import ALICE, RUNNER, Server

NOT_A_UUID = "not-a-uuid"
HUGE = 10**23  # past any 64-bit integer column

LOG = {"type": "log", "data": {"line": "hello"}}
RUN = "/api/runs/{main}"
EV = RUN + "/events"
REPORT = RUN + "/report"
R = RUNNER


@dataclass
class World:
    """Alice's runs on the shared server: `main` is claimed (in progress) under `token`."""

    server: Server
    alice: httpx.Client  # for setup and checks only: never sent anything that is refused
    main: str
    token: int
    done: str
    bait: str
    mark: int = 0

    def fresh(self) -> str:
        """A new pending run of alice's, for a case that must not touch `main`."""
        answer = self.alice.post("/api/runs", json={"task": "a fresh run"})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["run_id"])

    def snapshot(self) -> tuple[int, int]:
        """(alice's latest event position, main's last sequence), right now."""
        self.mark = latest_position(self.alice, self.mark)
        return self.mark, last_sequence(self.alice, self.main)

    def assert_unchanged(self, before: tuple[int, int]) -> None:
        """No event was appended to any of alice's runs, and main did not move."""
        mark, main_sequence = before
        new = self.alice.get("/api/events", params={"after": mark, "limit": 1000})
        assert new.status_code == 200, new.text
        assert new.json()["events"] == [], "a refused request appended events"
        assert last_sequence(self.alice, self.main) == main_sequence

    def client(self, key: str) -> httpx.Client:
        """A client of its own for one case (a refused request may close its connection)."""
        return self.server.client(key, verify=False)


def latest_position(client: httpx.Client, after: int) -> int:
    """The position of the caller's latest event (paging on from `after`)."""
    while True:
        page = client.get("/api/events", params={"after": after, "limit": 1000})
        assert page.status_code == 200, page.text
        events = page.json()["events"]
        if not events:
            return after
        after = events[-1]["position"]


def last_sequence(client: httpx.Client, run_id: str) -> int:
    """A run's last sequence, from its event history (not a read model)."""
    answer = client.get(f"/api/runs/{run_id}/events", params={"after": 10**6, "limit": 1})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["last_sequence"])


def fill(value: Any, world: World) -> Any:
    """Replace the placeholder "$token" anywhere in a JSON body with main's fencing token."""
    if value == "$token":
        return world.token
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value


def assert_error(
    status: int, body_text: str, headers: httpx.Headers, want_status: int, want_error: str
) -> dict[str, Any]:
    """The answer is the JSON error the contract names."""
    assert status == want_status, f"{status} {body_text[:500]}"
    assert headers.get("content-type", "").startswith("application/json"), headers
    body = json.loads(body_text)
    assert body["error"] == want_error, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def assert_invalid(
    status: int, body_text: str, headers: httpx.Headers, want_field: str | None
) -> None:
    """A 400 invalid_request whose `errors` list names the field at fault (when there is one)."""
    body = assert_error(status, body_text, headers, 400, "invalid_request")
    errors = body.get("errors")
    assert isinstance(errors, list), body
    for item in errors:
        assert isinstance(item["field"], str) and isinstance(item["message"], str), body
    if want_field is not None:
        named = [str(e["field"]).lower() for e in errors]
        want = want_field.lower()
        assert any(f == want or f.startswith(want + ".") for f in named), (
            f"errors should name {want_field!r}: {errors}"
        )


@dataclass(frozen=True)
class Probe:
    """One request of the contract suites; its path may name {main}, {done} or {fresh}."""

    name: str
    method: str
    path: str
    key: str = ALICE
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None

    def arguments(self, world: World, fresh: str | None = None) -> tuple[str, dict[str, Any]]:
        """The path and the httpx keyword arguments to send it with."""
        path = self.path.format(main=world.main, done=world.done, fresh=fresh)
        kwargs: dict[str, Any] = {"params": self.params, "headers": self.headers}
        if self.content is not None:
            kwargs["content"] = self.content
        elif self.json is not None:
            kwargs["json"] = fill(self.json, world)
        return path, kwargs


@dataclass(frozen=True)
class Case(Probe):
    """One request that must be refused."""

    field: str | None = None
    status: int = 400
    error: str = "invalid_request"


def send(
    world: World, case: Case, fresh: str | None = None, authorization: str | None = "key"
) -> tuple[int, str, httpx.Headers]:
    """Send a case on its own connection (`authorization=None`: with no key at all);
    never waits on an event stream's body."""
    path, kwargs = case.arguments(world, fresh)
    client = world.client(case.key)
    if authorization is None:
        client.headers.pop("authorization", None)
    with (
        client,
        client.stream(case.method, path, timeout=15, **kwargs) as response,
    ):
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, "<an event stream>", response.headers
        return response.status_code, response.read().decode(), response.headers


def check_refused(world: World, case: Case) -> None:
    """Send a case: it gets the error it names, and nothing changed."""
    fresh = world.fresh() if "{fresh}" in case.path else None
    before = world.snapshot()
    status, text, headers = send(world, case, fresh)
    if case.status == 400:
        assert_invalid(status, text, headers, case.field)
    else:
        assert_error(status, text, headers, case.status, case.error)
    world.assert_unchanged(before)
