"""Several `runledger serve` processes on one store: exactly one (the holder of the worker
lock) runs the projections and policies, the others serve from the read models it writes,
and a standby takes over when the leader dies.

Contract (docs/operations.md, "Several processes"): `--role api|worker|all`; reads with
min_position answer from any process; `/api/diagnostics` says `worker.role` and
`worker.leader`; killing the leader hands the work to a standby within seconds, and the
read models still equal a rebuild from the log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import readmodels
from tests.e2e.helpers import read_model, submit, wait_for
from tests.e2e.process_chaos import cut_lock_connection
from tests.support import ALICE, RUNNER, Server, open_runtime, postgres_schema


def worker_state(server: Server) -> dict[str, Any]:
    """The `worker` part of the server's diagnostics: its role and whether it leads."""
    with server.client(ALICE) as client:
        answer = client.get("/api/diagnostics")
        assert answer.status_code == 200, answer.text
        return answer.json()["worker"]


def leads(server: Server) -> bool:
    """True if the server says it holds the worker lock."""
    return bool(worker_state(server)["leader"])


@contextmanager
def servers(url: str, base: Path, *roles: str) -> Iterator[list[Server]]:
    """One started server per role, in order, all on the database `url`; killed afterwards."""
    with ExitStack() as stack:
        started = []
        for i, role in enumerate(roles):
            srv = Server(url, base / f"data-{i}", RUNLEDGER_ROLE=role)
            stack.callback(srv.kill)
            started.append(srv.start())
        yield started


def read_models(url: str, base: Path) -> tuple[list[Any], int]:
    """Every read-model row, table by table, and the lowest tracked position."""
    runtime = open_runtime(url, base / "inspect")
    try:
        with runtime.db.reading() as cur:
            rows = [
                cur.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in readmodels.READ_MODEL_TABLES
            ]
        return rows, runtime.read_models_position()
    finally:
        runtime.close()


def rebuilt(url: str, base: Path) -> list[Any]:
    """The read models rebuilt from the whole log (what `runledger projections rebuild` does)."""
    runtime = open_runtime(url, base / "inspect")
    try:
        runtime.rebuild()
    finally:
        runtime.close()
    return read_models(url, base)[0]


def test_an_api_process_reads_its_writes_while_a_worker_process_projects(
    store_url: str, tmp_path: Path
) -> None:
    with servers(store_url, tmp_path, "worker", "api") as (worker, api):
        assert worker_state(worker) == {"role": "worker", "leader": True}
        assert worker_state(api) == {"role": "api", "leader": False}
        with api.client(ALICE) as alice:
            for i in range(5):
                position = submit(alice, f"run {i}")["position"]
                run_id = submit(alice, f"and its twin {i}")["run_id"]
                assert read_model(alice, run_id, position + 1)["task"] == f"and its twin {i}"


def test_a_worker_process_answers_only_the_operations_routes(
    store_url: str, tmp_path: Path
) -> None:
    with servers(store_url, tmp_path, "worker") as (worker,), worker.client(ALICE) as alice:
        assert alice.get("/health").status_code == 200
        assert alice.post("/api/runs", json={"task": "not here"}).status_code == 404


def test_of_two_processes_exactly_one_leads(store_url: str, tmp_path: Path) -> None:
    with servers(store_url, tmp_path, "all", "all") as (first, second):
        assert [leads(first), leads(second)] == [True, False]


def test_killing_the_leader_hands_the_work_to_the_standby_and_nothing_is_applied_twice(
    store_url: str, tmp_path: Path
) -> None:
    with servers(store_url, tmp_path, "all", "all") as (first, second):
        with first.client(ALICE) as a, second.client(ALICE) as b:
            for i in range(10):
                submit(a if i % 2 else b, f"before the kill {i}")
        first.kill()
        wait_for(lambda: leads(second), 5, "the standby to take the worker lock")
        with second.client(ALICE) as b:
            for i in range(10):
                created = submit(b, f"after the kill {i}")
            read_model(b, created["run_id"], created["position"])
        second.stop()
    live, position = read_models(store_url, tmp_path)
    assert len(live[0]) == 20 and position == created["position"]
    assert rebuilt(store_url, tmp_path) == live


def test_a_waiting_claim_in_an_api_process_is_woken_by_a_submission_through_another(
    store_url: str, tmp_path: Path
) -> None:
    with servers(store_url, tmp_path, "all", "api") as (leader, api):
        answers: list[httpx.Response] = []

        def wait_for_work() -> None:
            with api.client(RUNNER) as runner:
                body = {"runner_id": "r1", "wait_seconds": 20}
                answers.append(runner.post("/api/runner/claim", json=body))

        waiting = threading.Thread(target=wait_for_work)
        waiting.start()
        with leader.client(ALICE) as alice:
            run_id = submit(alice, "wake the waiting runner")["run_id"]
        waiting.join(30)
        assert answers and answers[0].status_code == 200, answers
        assert answers[0].json()["run"]["run_id"] == run_id


@pytest.mark.postgres
def test_a_leader_that_loses_its_lock_connection_stops_and_one_process_leads_again(
    tmp_path: Path,
) -> None:
    with postgres_schema() as url, servers(url, tmp_path, "all", "all") as (first, second):
        cut_lock_connection(url)
        wait_for(
            lambda: any("lost the worker lock" in line for line in first.output),
            10,
            "the leader to notice",
        )
        wait_for(lambda: leads(first) != leads(second), 10, "exactly one leader again")
        with second.client(ALICE) as b:
            created = submit(b, "after the lock was lost")
            read_model(b, created["run_id"], created["position"])
