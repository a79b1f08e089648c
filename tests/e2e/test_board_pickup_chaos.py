"""Auto-pickup across crashes and processes, over real servers: while scripted runners
finish a board's runs (each end makes room for the policy to start the next task), the
server is SIGKILLed at random moments and restarted on the same database; on PostgreSQL,
two `--role all` servers share the work while the leadership moves. Every task is started
exactly once, under the run id its first start derives, and never more of the board's
runs are active than its limit, judged from the event log."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from domain.board import task_run_id
from tests.e2e.coordination_chaos import CHAOS_ENV, Runners, get_ok
from tests.e2e.pickup_helpers import auto_pickup, most_active, starts, task_runs
from tests.e2e.process_chaos import kill_while_reporting, move_leadership, two_processes
from tests.e2e.projects_helpers import create_project, expect
from tests.support import ALICE, Server

TASKS, LIMIT = 12, 3


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server whose leases and retries suit kills (see CHAOS_ENV)."""
    srv = Server(store_url, tmp_path / "data", **CHAOS_ENV).start()
    try:
        yield srv
    finally:
        srv.kill()


def ready_board(server: Server) -> tuple[str, list[str]]:
    """A project of TASKS ready tasks with auto-pickup on under LIMIT; its id and the
    task ids, top first."""
    with server.client(ALICE) as alice:
        pid = create_project(alice)["project_id"]
        path = f"/api/projects/{pid}/backlog/tasks"
        tasks = [
            expect(alice.post(path, json={"title": f"task {n}"}), 201)["task_id"]
            for n in range(TASKS)
        ]
        expect(alice.post(f"/api/projects/{pid}/backlog/ready-all"), 200)
        auto_pickup(alice, pid, LIMIT)
    return pid, tasks


def wait_until_every_run_ended(server: Server, pid: str, timeout: float = 120) -> None:
    """Until each task's run ended: done, or back in ready after a failure (a claim lost
    with a killed server expires its lease, and a board run has one attempt)."""
    deadline = time.monotonic() + timeout
    with server.client(ALICE) as alice:
        while True:
            board = get_ok(alice, f"/api/projects/{pid}/board")
            shown = {c["name"]: c["tasks"] for c in board["columns"]}
            ended = len(shown["done"]) + sum(t["last_failure"] is not None for t in shown["ready"])
            if ended == TASKS and len(shown["ready"]) == TASKS - len(shown["done"]):
                return
            assert time.monotonic() < deadline, f"the board is still moving: {shown}"
            time.sleep(0.1)


def project_log(server: Server, pid: str) -> list[dict]:
    """The project's events in global order, waiting out a server that is starting."""
    events: list[dict] = []
    after = 0
    with server.client(ALICE) as alice:
        while True:
            page = get_ok(alice, "/api/events", project_id=pid, after=after, limit=1000)
            events.extend(page["events"])
            if not page["events"]:
                return events
            after = page["last_position"]


def assert_started_once(server: Server, pid: str, tasks: list[str]) -> None:
    """Each task started once, top first, its run made once under its derived id; never
    more than LIMIT of the board's runs active at once."""
    events = project_log(server, pid)
    assert starts(events) == tasks
    runs = task_runs(events)
    assert Counter(runs.values()) == Counter(tasks)
    assert set(runs) == {str(task_run_id(UUID(pid), task, 1)) for task in tasks}
    assert most_active(events) <= LIMIT
    with server.client(ALICE) as alice:
        made = get_ok(alice, f"/api/projects/{pid}/runs", limit=500)["items"]
    assert sorted(r["run_id"] for r in made) == sorted(runs)


def test_a_board_picked_up_while_its_server_is_killed_again_and_again_starts_each_task_once(
    server: Server,
) -> None:
    pid, tasks = ready_board(server)
    with Runners([server], threads=3) as runners:
        kill_while_reporting(server, runners, random.Random(4), TASKS, 6)
        wait_until_every_run_ended(server, pid)
    assert runners.errors == []
    assert_started_once(server, pid, tasks)


@pytest.mark.postgres
def test_two_processes_start_each_task_once_while_the_leadership_moves(tmp_path: Path) -> None:
    with two_processes(tmp_path) as (url, servers):
        pid, tasks = ready_board(servers[1])  # through the standby
        with Runners(servers, threads=3) as runners:
            move_leadership(url, servers, runners, random.Random(8), total=TASKS)
            wait_until_every_run_ended(servers[0], pid)
        assert runners.errors == []
        assert_started_once(servers[1], pid, tasks)
