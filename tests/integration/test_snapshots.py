"""Runs' snapshots on both stores (domain/runs/snapshot.py, api/service/engine.py): taken
every SNAPSHOT_EVERY events, they give the same run as replaying every event, at the head
and at any earlier version, in a process that never saw the run; and a snapshot taken by
an older version of the Run class is upcast like its events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from api.service.engine import SNAPSHOT_EVERY
from api.service.runtime import Runtime
from domain.runs import Run
from tests.support import open_runtime

OWNER, RUNNER = "alice", "runner-1"


@pytest.fixture
def rt(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = open_runtime(store_url, tmp_path / "a")
    yield runtime
    runtime.close()


@pytest.fixture
def fresh(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """Another process on the same store, which has seen no run."""
    runtime = open_runtime(store_url, tmp_path / "b")
    yield runtime
    runtime.close()


def long_run(rt: Runtime, events: int) -> UUID:
    """A claimed run with gates, a directive and `events` events in all."""
    engine = rt.engine
    run_id = engine.submit_run(OWNER, "a long task").run_id
    _, lease = engine.claim_run(run_id, RUNNER)
    engine.record_output(
        run_id, RUNNER, lease.fencing_token, [("gate.opened", {"kind": "question", "prompt": "?"})]
    )
    engine.steer_run(
        run_id, OWNER, directive_id="d1", kind="amend", instruction="go", targets=[str(run_id)]
    )
    version = engine.get_run(run_id).version
    while version < events:
        batch = [("log", {"n": n}) for n in range(min(333, events - version))]
        version = engine.record_output(run_id, RUNNER, lease.fencing_token, batch).sequence
    return run_id


def snapshot_versions(rt: Runtime, run_id: UUID) -> list[int]:
    assert rt.engine.snapshots is not None
    return [s.originator_version for s in rt.engine.snapshots.get(run_id)]


def replayed(rt: Runtime, run_id: UUID, version: int | None = None) -> dict[str, Any]:
    """The run from every one of its events, no snapshot."""
    run: Any = None
    for event in rt.engine.repository.event_store.get(run_id, lte=version):
        run = event.mutate(run)
    return state(run)


def state(run: Run) -> dict[str, Any]:
    return {k: v for k, v in vars(run).items() if k != "_pending_events"}


def test_snapshots_are_taken_every_so_many_events(rt: Runtime) -> None:
    run_id = long_run(rt, 3 * SNAPSHOT_EVERY + 10)
    versions = snapshot_versions(rt, run_id)
    assert len(versions) == 3
    assert [v // SNAPSHOT_EVERY for v in versions] == [1, 2, 3]
    short = rt.engine.submit_run(OWNER, "short").run_id
    assert snapshot_versions(rt, short) == []


def test_a_run_loads_the_same_from_a_snapshot_at_any_version(rt: Runtime, fresh: Runtime) -> None:
    last = 2 * SNAPSHOT_EVERY + 77
    run_id = long_run(rt, last)
    snaps = snapshot_versions(rt, run_id)
    assert fresh.engine.get_run(run_id).version == last
    assert state(fresh.engine.get_run(run_id)) == replayed(rt, run_id)
    for version in {1, 2, 3, SNAPSHOT_EVERY - 1, *snaps, *(s + 1 for s in snaps), last - 1, last}:
        assert state(fresh.engine.get_run(run_id, version=version)) == replayed(
            rt, run_id, version
        ), version


def test_an_older_snapshot_is_upcast_by_the_run_class(
    rt: Runtime, fresh: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Run class moves on (a new attribute, and a version to say so) after snapshots
    # were taken: a run loaded from one of them gets the attribute from the upcast.
    run_id = long_run(rt, SNAPSHOT_EVERY + 5)
    assert snapshot_versions(rt, run_id)

    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["flavour"] = "vanilla"

    monkeypatch.setattr(Run, "class_version", 2, raising=False)
    monkeypatch.setattr(Run, "upcast_v1_v2", staticmethod(upcast_v1_v2), raising=False)
    loaded = fresh.engine.get_run(run_id)
    assert loaded.flavour == "vanilla"  # type: ignore[attr-defined]
    assert loaded.version == SNAPSHOT_EVERY + 5


def test_a_run_that_cannot_be_snapshotted_still_works(
    rt: Runtime, fresh: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = long_run(rt, 10)
    run = rt.engine.get_run(run_id)
    run.__dict__["odd_value"] = {1, 2}  # not JSON: the snapshot is skipped, with a warning
    rt.engine._snapshot(run)
    assert "no snapshot of run" in caplog.text
    assert snapshot_versions(rt, run_id) == []
    assert fresh.engine.get_run(run_id).version == 10
