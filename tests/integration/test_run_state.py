"""A run's state for reads of its events (api/service/events.py `run_state`) on both stores:
taken from the runs view plus the events the view has not applied yet, it is the state the
run's own events give, whether the view is current, behind, or has not seen the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

from api.service.events import VIEW_TAIL, run_state
from api.service.runtime import Runtime
from domain.errors import NotFound
from tests.support import open_runtime

OWNER, RUNNER = "alice", "runner-1"


@pytest.fixture
def rt(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose read models move only when the test catches them up."""
    runtime = open_runtime(store_url, tmp_path)
    yield runtime
    runtime.close()


def state(rt: Runtime, run_id: UUID, owner: str = OWNER) -> tuple[bool, int]:
    services: Any = SimpleNamespace(db=rt.db, engine=rt.engine)
    return run_state(services, run_id, owner)


def truth(rt: Runtime, run_id: UUID) -> tuple[bool, int]:
    run = rt.engine.get_run(run_id, OWNER)
    return run.is_terminal, run.version


def claimed(rt: Runtime) -> tuple[UUID, int]:
    run_id = rt.engine.submit_run(OWNER, "task").run_id
    _, lease = rt.engine.claim_run(run_id, RUNNER)
    return run_id, lease.fencing_token


def test_a_run_the_view_has_not_seen_is_read_from_its_events(rt: Runtime) -> None:
    run_id, _ = claimed(rt)
    assert state(rt, run_id) == truth(rt, run_id) == (False, 2)
    with pytest.raises(NotFound):
        state(rt, run_id, "bob")


def test_the_view_and_the_events_after_it_give_the_run_s_state(rt: Runtime) -> None:
    run_id, token = claimed(rt)
    rt.catch_up()
    assert state(rt, run_id) == (False, 2)
    rt.engine.record_output(run_id, RUNNER, token, [("log", {"n": n}) for n in range(5)])
    assert state(rt, run_id) == truth(rt, run_id) == (False, 7)  # the view is 5 behind
    rt.engine.cancel_run(run_id, OWNER)
    assert state(rt, run_id) == truth(rt, run_id)
    assert state(rt, run_id)[0] is True  # ended, though the view does not know yet
    rt.catch_up()
    assert state(rt, run_id) == truth(rt, run_id)
    with pytest.raises(NotFound):
        state(rt, run_id, "bob")


def test_a_deletion_the_view_has_not_applied_hides_the_run(rt: Runtime) -> None:
    run_id = rt.engine.submit_run(OWNER, "task").run_id
    rt.engine.cancel_run(run_id, OWNER)
    rt.catch_up()
    assert state(rt, run_id) == truth(rt, run_id) == (True, 2)
    rt.engine.delete_run(run_id, OWNER)
    with pytest.raises(NotFound):
        state(rt, run_id)
    rt.catch_up()
    with pytest.raises(NotFound):
        state(rt, run_id)


def test_a_view_far_behind_falls_back_to_the_run(rt: Runtime) -> None:
    run_id, token = claimed(rt)
    rt.catch_up()
    rt.engine.record_output(run_id, RUNNER, token, [("log", {"n": n}) for n in range(VIEW_TAIL)])
    assert state(rt, run_id) == truth(rt, run_id) == (False, 2 + VIEW_TAIL)
