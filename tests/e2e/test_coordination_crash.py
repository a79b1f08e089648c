"""Coordinator dispatch across crashes, over a real process: while a 20-subtask plan is
dispatched in waves (scripted runners completing children between the kills, so later
waves go out while the server dies), the server is SIGKILLed at random moments and
restarted on the same database. Each subtask still gets exactly one child run, and the plan
reaches its assembly review. Every other child reports `changes`, so the coordinator's own
approval of its children and their (repository-less) merges are interrupted too.

A kill right after a runner's report was acknowledged lands, at a random delay, somewhere in
what the report sets off: the runs view catching up, the coordination policy settling the
child, recording `subtask.dispatched` for its dependents, creating their child runs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.coordination_chaos import (
    CHAOS_ENV,
    Runners,
    dispatched_once,
    layered_plan,
    start_coordinator,
    wait_for_assembly,
)
from tests.e2e.process_chaos import kill_while_reporting
from tests.support import ALICE, Server

KILLS = 6


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server whose leases and retries suit kills (see CHAOS_ENV)."""
    srv = Server(store_url, tmp_path / "data", **CHAOS_ENV).start()
    try:
        yield srv
    finally:
        srv.kill()


def test_a_plan_dispatched_while_its_server_is_killed_again_and_again_has_one_child_per_subtask(
    server: Server,
) -> None:
    subtasks = layered_plan()
    keys = [s["key"] for s in subtasks]
    with server.client(ALICE) as alice:
        run_id = start_coordinator(alice, subtasks)  # before a runner could claim it
    with Runners([server], changes=True) as runners:
        kill_while_reporting(server, runners, random.Random(9), len(keys), KILLS)
        wait_for_assembly(server, run_id)
    assert runners.errors == []
    children = dispatched_once(server, run_id, keys)
    assert set(runners.claimed) <= set(children.values())
    assert set(runners.reported) == set(children.values())


def test_subtasks_reopened_by_a_review_while_the_server_is_killed_get_one_child_per_round(
    server: Server,
) -> None:
    subtasks = layered_plan()
    keys = [s["key"] for s in subtasks]
    # s2.1 and what depends on it: s3.0, s3.1 (on s2.1), s4.0, s4.1, s4.3 (on those)
    reopened = ["s2.1", "s3.0", "s3.1", "s4.0", "s4.1", "s4.3"]
    with server.client(ALICE) as alice:
        run_id = start_coordinator(alice, subtasks)
    with Runners([server], changes=True) as runners:
        wait_for_assembly(server, run_id)
        with server.client(ALICE) as alice:
            body = {"approved": False, "request_changes": True, "comment": "once more"}
            asked = alice.post(
                f"/api/runs/{run_id}/review",
                json={**body, "subtasks": ["s2.1"]},
                headers={"Idempotency-Key": "changes"},
            )
        assert asked.status_code == 200, asked.text
        # The kills wait for round-2 reports: by then the read model has the coordinator
        # in progress again, so the assembly awaited next is the second one.
        kill_while_reporting(server, runners, random.Random(5), len(reopened), 4)
        wait_for_assembly(server, run_id)
    assert runners.errors == []
    children = dispatched_once(server, run_id, keys, reopened)
    assert set(runners.reported) == set(children.values())
    with server.client(ALICE) as alice:
        for key in reopened:
            child = alice.get(f"/api/runs/{children[key, 2]}").json()
            assert child["comment"] == "once more", child
