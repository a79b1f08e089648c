"""Policies on both stores, driven in-process against a real database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import readmodels
from api.service.policies import LeaseExpiry
from api.service.runtime import Runtime
from tests.support import open_runtime

OWNER, RUNNER = "alice", "runner-1"


@pytest.fixture
def expiring(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose leases lapse at once."""
    rt = open_runtime(store_url, tmp_path, lease_seconds=0)
    yield rt
    rt.close()


def status_of(runtime: Runtime, run_id: object) -> str:
    return runtime.engine.get_run(run_id).status  # type: ignore[arg-type]


def test_the_runs_of_a_deleted_project_are_cancelled_by_the_cleanup_sweep(
    runtime: Runtime,
) -> None:
    engine = runtime.engine
    project, _ = engine.create_project(OWNER, "p", None, "main")
    other, _ = engine.create_project(OWNER, "q", None, "main")
    waiting = engine.submit_project_run(project.id, OWNER, "t").run_id
    working = engine.submit_project_run(project.id, OWNER, "t").run_id
    engine.claim_run(working, RUNNER)
    finished = engine.submit_project_run(project.id, OWNER, "t").run_id
    engine.cancel_run(finished, OWNER)
    finished_version = engine.get_run(finished).version
    elsewhere = engine.submit_project_run(other.id, OWNER, "t").run_id
    # The deletion alone, as if the process died before cancelling anything.
    engine.delete_project(project.id, OWNER)
    runtime.catch_up()

    runtime.cleanup.tick()
    runtime.catch_up()

    assert status_of(runtime, waiting) == status_of(runtime, working) == "cancelled"
    assert status_of(runtime, elsewhere) == "pending"
    assert engine.get_run(finished).version == finished_version  # left alone
    runtime.cleanup.tick()  # a second sweep finds nothing more to do
    assert engine.get_run(waiting).version == 2


def test_the_lease_policy_expires_a_lapsed_lease_once_however_often_it_runs(
    expiring: Runtime,
) -> None:
    runtime = expiring
    engine = runtime.engine
    run_id = engine.submit_run(OWNER, "t", max_attempts=2).run_id
    engine.claim_run(run_id, RUNNER)
    runtime.catch_up()
    time.sleep(0.01)  # the lease lasted zero seconds
    policy = LeaseExpiry(runtime.db, engine)
    for _ in range(3):
        policy.tick()
        runtime.catch_up()
    run = engine.get_run(run_id)
    assert (run.status, run.attempt) == ("pending", 2)
    with runtime.db.reading() as cur:
        assert readmodels.expired_leases(cur, time.time()) == []


def test_every_policy_an_event_wakes_is_one_the_leader_runs(runtime: Runtime) -> None:
    from domain.topics import WAKING_TOPICS

    assert runtime.lead_if_free()
    try:
        assert set(WAKING_TOPICS) <= {policy.name for policy in runtime.policies}
    finally:
        runtime.stop()


def test_each_claim_of_a_run_is_confirmed_in_the_leases_view_by_its_own_first_output(
    store_url: str, tmp_path: Path
) -> None:
    # The leases projection skips confirming a run whose claim it confirmed already: a
    # later claim of the run must be confirmed anew, or the lease policy would find it
    # unconfirmed forever (and the run's aggregate refuse to give it back, every tick).
    runtime = open_runtime(store_url, tmp_path, retry_backoff=0.0)
    try:
        engine = runtime.engine
        later = time.time() + 3600  # any claim still unconfirmed is due by then

        def unconfirmed() -> list[tuple[str, int]]:
            runtime.catch_up()
            with runtime.db.reading() as cur:
                return readmodels.unconfirmed_claims(cur, later)

        run_id = engine.submit_run(OWNER, "t", max_attempts=3).run_id
        for attempt in (1, 2):
            _, lease = engine.claim_run(run_id, RUNNER)
            assert unconfirmed() == [(str(run_id), lease.fencing_token)]
            for n in range(2):  # the second finds the claim confirmed already
                engine.record_output(run_id, RUNNER, lease.fencing_token, [("log", {"n": n})])
                assert unconfirmed() == []
            if attempt == 1:
                failure = {"category": "network", "message": "timeout"}
                engine.report_outcome(
                    run_id, RUNNER, lease.fencing_token, "failed", failure=failure
                )
                assert engine.get_run(run_id).status == "pending"
    finally:
        runtime.close()


def test_a_claim_confirmed_in_a_projection_batch_that_failed_is_confirmed_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch that confirmed it is rolled back: what the projection remembered of it
    # goes too, and the batch applied again confirms the claim.
    engine = runtime.engine
    run_id = engine.submit_run(OWNER, "t").run_id
    _, lease = engine.claim_run(run_id, RUNNER)
    runtime.catch_up()
    advance = readmodels.advance_tracking_all

    def broken(*args: object) -> bool:
        raise RuntimeError("the transaction failed")

    monkeypatch.setattr(readmodels, "advance_tracking_all", broken)
    engine.record_output(run_id, RUNNER, lease.fencing_token, [("log", {})])
    with pytest.raises(RuntimeError):
        runtime.catch_up()
    monkeypatch.setattr(readmodels, "advance_tracking_all", advance)
    runtime.catch_up()

    with runtime.db.reading() as cur:
        assert readmodels.unconfirmed_claims(cur, time.time() + 3600) == []
