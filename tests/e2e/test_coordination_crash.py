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
import time
from pathlib import Path

from tests.e2e.coordination_chaos import (
    CHAOS_ENV,
    Runners,
    dispatched_once,
    layered_plan,
    start_coordinator,
    wait_for_assembly,
)
from tests.support import ALICE, Server

KILLS = 6


def test_a_plan_dispatched_while_its_server_is_killed_again_and_again_has_one_child_per_subtask(
    store_url: str, tmp_path: Path
) -> None:
    rng = random.Random(9)
    subtasks = layered_plan()
    keys = [s["key"] for s in subtasks]
    server = Server(store_url, tmp_path / "data", **CHAOS_ENV).start()
    try:
        with server.client(ALICE) as alice:
            run_id = start_coordinator(alice, subtasks)  # before a runner could claim it
        with Runners([server], changes=True) as runners:
            for kill in range(KILLS):
                # The first kill lands in the first wave's dispatch, right after the PUT;
                # the others are spread over the plan, each after some report's answer.
                due = kill * len(keys) // KILLS
                runners.wait_reported(due)
                time.sleep(rng.uniform(0, 0.1))
                server.kill()
                server.start()
            wait_for_assembly(server, run_id)
        assert runners.errors == []
        children = dispatched_once(server, run_id, keys)
        assert set(runners.claimed) <= set(children.values())
        assert set(runners.reported) == set(children.values())
    finally:
        server.kill()
