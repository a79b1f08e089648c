"""Helpers of the Projects API end-to-end tests: users who have done nothing yet on a shared
server, a git repository, and the calls and checks the tests make."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import git
from tests.support import KEYS, Server, fresh_store

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
NOT_FOUND = {"error": "not_found", "detail": "No such project."}
PAIRS = 100  # pairs of users a shared server knows: more than the tests of a module


class User(httpx.Client):
    """A client speaking for one user (`name`)."""

    def __init__(self, server: Server, key: str, name: str) -> None:
        super().__init__(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        self.name = name


class Site:
    """A server shared by the tests of a module, which hands each test users of its own."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._pairs = itertools.count()
        self._pair: dict[str, int] = {}

    def user(self, test: str, who: str) -> User:
        """`who` ("alice" or "bob") of the test `test`: the same pair for one test."""
        if test not in self._pair:
            self._pair[test] = next(self._pairs)
        pair = self._pair[test]
        assert pair < PAIRS, "the shared server ran out of fresh users: raise PAIRS"
        return User(self.server, f"k{who}-{pair}", f"{who}-{pair}")


def start_site(
    store_kind: str, tmp_path_factory: pytest.TempPathFactory, name: str, **env: str
) -> Iterator[Site]:
    """A server on a fresh store of `store_kind` knowing PAIRS fresh pairs of users."""
    fresh = ",".join(f"k{who}-{i}={who}-{i}:user" for i in range(PAIRS) for who in ("alice", "bob"))
    with ExitStack() as stack:
        base = tmp_path_factory.mktemp(f"{name}-{store_kind}")
        url = stack.enter_context(fresh_store(store_kind, base))
        srv = Server(url, base / "data", RUNLEDGER_API_KEYS=f"{KEYS},{fresh}", **env).start()
        stack.callback(srv.kill)
        yield Site(srv)


def make_repo(path: Path) -> Path:
    """A git repository with one commit on `main`."""
    path.mkdir(parents=True)
    git.git(path, "init", "--quiet", "--initial-branch=main")
    (path / "README").write_text("hello\n")
    git.commit_all(path, "initial")
    return path


def expect(response: httpx.Response, status: int) -> Any:
    """The decoded body of a response that must have `status` (None for an empty body)."""
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else None


def expect_invalid(response: httpx.Response, field: str, *words: str) -> dict[str, Any]:
    """A 400 invalid_request whose errors name `field` and whose detail says `words`."""
    body = expect(response, 400)
    assert body["error"] == "invalid_request", body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert field in [e["field"] for e in body["errors"]], body
    said = (body["detail"] + " " + " ".join(e["message"] for e in body["errors"])).lower()
    for word in words:
        assert word in said, (word, body)
    return body


def head(client: httpx.Client) -> int:
    """The event store's head position (for read-your-writes after a command with no position)."""
    return int(expect(client.get("/api/diagnostics"), 200)["head_position"])


def caught_up(client: httpx.Client) -> dict[str, int]:
    """Query parameters that make a read include everything committed so far."""
    return {"min_position": head(client)}


def create_project(client: httpx.Client, **body: Any) -> dict[str, Any]:
    project = expect(client.post("/api/projects", json={"name": "demo", **body}), 201)
    assert isinstance(project, dict)
    return project


def get_project(client: httpx.Client, project_id: str) -> httpx.Response:
    return client.get(f"/api/projects/{project_id}", params=caught_up(client))


def list_projects(client: httpx.Client) -> list[dict[str, Any]]:
    body = expect(client.get("/api/projects", params=caught_up(client)), 200)
    return list(body["items"])


def submit(client: httpx.Client, path: str, task: str, **fields: Any) -> dict[str, Any]:
    """POST a run (to /api/runs or a project's runs); the 202 body."""
    body = expect(client.post(path, json={"task": task, **fields}), 202)
    assert body["status"] == "pending" and body["sequence"] == 1, body
    return dict(body)


def run_of(client: httpx.Client, run_id: str, position: int) -> dict[str, Any]:
    """The run read model once it includes `position`."""
    answer = client.get(f"/api/runs/{run_id}", params={"min_position": position})
    body = expect(answer, 200)
    assert int(answer.headers["x-position"]) >= position
    return dict(body)


def events_of(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    body = expect(client.get(f"/api/runs/{run_id}/events", params={"limit": 1000}), 200)
    assert len(body["events"]) < 1000
    return list(body["events"])


def project_run_ids(client: httpx.Client, project_id: str) -> set[str]:
    answer = client.get(f"/api/projects/{project_id}/runs", params=caught_up(client))
    body = expect(answer, 200)
    assert body["next_cursor"] is None
    return {run["run_id"] for run in body["items"]}


def claim(runner: httpx.Client, expected_run_id: str) -> dict[str, Any]:
    """Claim the oldest pending run (waiting at most 5 s) and check it is the one expected."""
    lease = expect(
        runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 5}), 200
    )
    assert lease["run"]["run_id"] == expected_run_id, lease
    return dict(lease)
