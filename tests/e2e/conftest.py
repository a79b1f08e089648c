"""Fixtures of end-to-end modules that share one server per store: the contract tests'
(`test_api_contract_*.py`) and the Projects API tests' (`test_project*.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.contract_helpers import World
from tests.e2e.projects_helpers import Site, User, start_site
from tests.support import ALICE, RUNNER, Server, fresh_store


@pytest.fixture(scope="module")
def shared_server(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `runledger serve` per store for the whole module."""
    with ExitStack() as stack:
        base = tmp_path_factory.mktemp(f"contract-{store_kind}")
        url = stack.enter_context(fresh_store(store_kind, base))
        srv = Server(url, base / "data").start()
        stack.callback(srv.kill)
        yield srv


@pytest.fixture(scope="module")
def world(shared_server: Server) -> Iterator[World]:
    """main: claimed by the runner; done: cancelled; bait: pending (something to claim)."""
    srv = shared_server
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        main = alice.post("/api/runs", json={"task": "the main run"}).json()["run_id"]
        claim = runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 10})
        assert claim.status_code == 200, claim.text
        assert claim.json()["run"]["run_id"] == main
        done = alice.post("/api/runs", json={"task": "a finished run"}).json()["run_id"]
        cancelled = alice.post(f"/api/runs/{done}/cancel", json={"reason": "done"})
        assert cancelled.status_code == 200, cancelled.text
        bait = alice.post("/api/runs", json={"task": "claim me if you dare"}).json()["run_id"]
        yield World(srv, alice, main, int(claim.json()["fencing_token"]), done, bait)


@pytest.fixture(scope="module")
def site(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The module's server on each store."""
    yield from start_site(store_kind, tmp_path_factory, "projects")


@pytest.fixture
def alice(site: Site, request: pytest.FixtureRequest) -> Iterator[User]:
    """A user with no projects and no runs yet."""
    with site.user(request.node.nodeid, "alice") as client:
        yield client


@pytest.fixture
def bob(site: Site, request: pytest.FixtureRequest) -> Iterator[User]:
    """Another user with no projects and no runs yet."""
    with site.user(request.node.nodeid, "bob") as client:
        yield client


@pytest.fixture
def srv(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A real `runledger serve` on each store on which no lease expires mid-test (a test
    that stops to look at a page or a stream holds its claim for as long as it needs)."""
    server = Server(store_url, tmp_path / "data", RUNLEDGER_LEASE_SECONDS="3600").start()
    try:
        yield server
    finally:
        server.kill()
