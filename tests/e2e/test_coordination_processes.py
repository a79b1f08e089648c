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
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest

from adapters.locks import ADVISORY_NAMESPACE, advisory_key
from adapters.store import StoreSettings
from api.service.leadership import LOCK_NAME
from tests.e2e.coordination_chaos import (
    CHAOS_ENV,
    Runners,
    dispatched_once,
    get_ok,
    layered_plan,
    start_coordinator,
    wait_for,
    wait_for_assembly,
)
from tests.support import ALICE, Server, open_runtime, postgres_schema

pytestmark = pytest.mark.postgres


@contextmanager
def two_processes(tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    """A fresh schema and two started `--role all` servers on it (the first leads)."""
    with postgres_schema() as url, ExitStack() as stack:
        started = []
        for i in range(2):
            srv = Server(url, tmp_path / f"data-{i}", RUNLEDGER_ROLE="all", **CHAOS_ENV)
            stack.callback(srv.kill)
            started.append(srv.start())
        yield url, started


def leader_of(servers: list[Server]) -> Server | None:
    """The one server that says it leads (None while none or both do)."""
    leading = []
    for srv in servers:
        if srv.proc is None or srv.proc.poll() is not None:
            continue
        with srv.client(ALICE) as client:
            if get_ok(client, "/api/diagnostics")["worker"]["leader"]:
                leading.append(srv)
    return leading[0] if len(leading) == 1 else None


def cut_lock_connection(url: str) -> None:
    """End the database session holding the worker lock: its process finds out later."""
    settings = StoreSettings.from_url(url)
    key = advisory_key(settings, LOCK_NAME) & 0xFFFFFFFF
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = %s AND objid = %s AND granted",
            (ADVISORY_NAMESPACE, key),
        )


def move_leadership(url: str, servers: list[Server], runners: Runners, rng: random.Random) -> None:
    """A third of the way: SIGKILL the leader, wait for the standby to lead, restart the
    dead one. Two thirds of the way: cut the new leader's lock connection."""
    total = 20
    runners.wait_reported(total // 3)
    time.sleep(rng.uniform(0, 0.1))
    first = leader_of(servers)
    assert first is not None
    first.kill()
    wait_for(lambda: leader_of(servers) not in (None, first), 10, "the standby to lead")
    first.start()
    runners.wait_reported(2 * total // 3)
    time.sleep(rng.uniform(0, 0.1))
    cut_lock_connection(url)
    wait_for(lambda: leader_of(servers) is not None, 15, "one leader again")


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
