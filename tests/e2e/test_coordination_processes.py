"""Coordinator dispatch with two `runledger serve --role all` processes on one PostgreSQL:
runners claim and report through both, the plan is set through the standby, and the
leadership moves mid-dispatch (the leader SIGKILLed, later the new leader's lock connection
cut while it may be sweeping). No subtask gets two children and the plan completes.

A third sweeper (an in-process runtime calling the coordination policy's tick in a loop,
as a process that believed it led would) races the leader throughout the second test: the
exactly-once guarantee must not rest on the worker lock.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.coordination_chaos import (
    Runners,
    dispatched_once,
    layered_plan,
    start_coordinator,
    wait_for_assembly,
)
from tests.e2e.process_chaos import leader_of, move_leadership, two_processes
from tests.support import ALICE, open_runtime

pytestmark = pytest.mark.postgres


def test_two_processes_give_each_subtask_one_child_while_the_leadership_moves(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    subtasks = layered_plan()
    keys = [s["key"] for s in subtasks]
    with two_processes(tmp_path) as (url, servers):
        assert leader_of(servers) is servers[0]
        with servers[1].client(ALICE) as alice:  # the plan comes in through the standby
            run_id = start_coordinator(alice, subtasks)
        with Runners(servers) as runners:
            move_leadership(url, servers, runners, rng)
            wait_for_assembly(servers[0], run_id)
        assert runners.errors == []
        children = dispatched_once(servers[1], run_id, keys)
        assert set(runners.reported) == set(children.values())
        with servers[0].client(ALICE) as alice:
            approved = alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "merged"


class Sweeper:
    """The coordination policy of an in-process runtime, ticking in a loop on a thread:
    one more process sweeping the plans beside the leader."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.runtime = open_runtime(url, data_dir)
        self.ticks = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sweeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.runtime.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.runtime.coordination.tick()
                self.ticks += 1
            except Exception as exc:
                self.errors.append(repr(exc))
            time.sleep(0.005)


def test_a_third_sweeper_racing_the_leader_never_gives_a_subtask_two_children(
    tmp_path: Path,
) -> None:
    subtasks = layered_plan()
    keys = [s["key"] for s in subtasks]
    with two_processes(tmp_path) as (url, servers), Sweeper(url, tmp_path / "sweeper") as sweeper:
        with servers[0].client(ALICE) as alice:
            run_id = start_coordinator(alice, subtasks)
        with Runners(servers) as runners:
            wait_for_assembly(servers[0], run_id)
        assert runners.errors == [] and sweeper.errors == []
        assert sweeper.ticks > 0
        children = dispatched_once(servers[0], run_id, keys)
        assert set(runners.reported) == set(children.values())
