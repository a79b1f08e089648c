"""The runs projection on both stores: rows equal `run_view`, exactly once, even under crashes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

from adapters import readmodels
from adapters.db import Cursor, StoredRow
from api.service.engine import Engine
from api.service.runtime import Runtime
from domain.runs import Run
from projections.runs import RunsProjection, run_view
from tests.support import open_runtime

OWNER, RUNNER = "alice", "runner-1"


def rows_of(runtime: Runtime) -> list[tuple[Any, ...]]:
    """The runs view as stored: run id, owner, project, parent, subtask, status, archived,
    claimable, created position and the parsed document (other columns are left to the
    rebuild test)."""
    with runtime.db.reading() as cur:
        rows = readmodels.all_runs(cur)
    return [(*row[:8], row[-2], orjson.loads(row[-1])) for row in rows]


def expected_rows(runtime: Runtime) -> list[tuple[Any, ...]]:
    """The rows the events call for: one per run not deleted, built from the engine's state."""
    rows = []
    for first in runtime.db.events_after(0, 100_000):
        if first.sequence != 1 or first.topic != Run.Submitted.TOPIC:
            continue
        run = runtime.engine.get_run(first.run_id)
        if run.deleted:
            continue
        rows.append(
            (
                str(run.id),
                run.owner,
                run.project_id,
                run.parent_run_id,
                run.subtask_key,
                run.status,
                int(run.archived_at is not None),
                int(run.is_claimable),
                first.position,
                run_view(run),
            )
        )
    return sorted(rows, key=lambda row: row[0])


def tracked(runtime: Runtime) -> int:
    """The runs projection's stored tracking position."""
    with runtime.db.reading() as cur:
        return readmodels.tracked_position(cur, RunsProjection.name)


def view_of(runtime: Runtime, run_id: UUID) -> dict[str, Any] | None:
    """One run's row as the API reads it."""
    with runtime.db.reading() as cur:
        return readmodels.get_run(cur, str(run_id), OWNER)


def claimed_run(engine: Engine, task: str = "fix the flaky test") -> tuple[UUID, int]:
    """A run claimed by RUNNER: its id and fencing token."""
    run_id = engine.submit_run(OWNER, task).run_id
    _, lease = engine.claim_run(run_id, RUNNER)
    return run_id, lease.fencing_token


def runs_in_every_state(engine: Engine) -> list[UUID]:
    """A handful of runs, each left in a different state."""
    pending = engine.submit_run(OWNER, "pending", project_id="p1", agent="claude").run_id
    working, token = claimed_run(engine, "working")
    engine.record_output(
        working,
        RUNNER,
        token,
        [
            ("step.started", {"n": 1}),
            ("gate.opened", {"kind": "tool_approval", "prompt": "run rm?"}),
            ("agent.message", {"text": "héllo ✓"}),
        ],
    )
    reviewing, token = claimed_run(engine, "reviewing")
    engine.report_outcome(
        reviewing,
        RUNNER,
        token,
        "changes",
        tree_hash="abc",
        diff_stats={"files": 1, "added": 2, "removed": 3},
        branch="b",
    )
    merged, token = claimed_run(engine, "merged")
    engine.report_outcome(merged, RUNNER, token, "changes")
    engine.review_run(merged, OWNER, approved=True, comment="ship it")
    failed, token = claimed_run(engine, "failed")
    engine.report_outcome(
        failed, RUNNER, token, "failed", failure={"category": "network", "message": "down"}
    )
    engine.archive_run(failed, OWNER)
    again, token = claimed_run(engine, "sent back")
    engine.report_outcome(again, RUNNER, token, "changes")
    engine.review_run(again, OWNER, approved=False, request_changes=True, comment="more tests")
    paused, _ = claimed_run(engine, "paused")
    engine.pause_run(paused, OWNER)
    child = engine.submit_run(OWNER, "child", parent_run_id=str(pending)).run_id
    engine.cancel_run(child, OWNER, reason="not needed")
    return [pending, working, reviewing, merged, failed, again, paused, child]


class ProjectionContract:
    """What the runs projection promises on each store; subclassed once per backend below."""

    def test_after_catch_up_each_row_equals_the_runs_view(self, runtime: Runtime) -> None:
        run_ids = runs_in_every_state(runtime.engine)

        assert runtime.projection.catch_up() == runtime.db.head()

        for run_id in run_ids:
            assert view_of(runtime, run_id) == run_view(runtime.engine.get_run(run_id))
        assert rows_of(runtime) == expected_rows(runtime)
        assert tracked(runtime) == runtime.db.head()

    def test_catching_up_after_every_command_equals_catching_up_once(
        self, runtime: Runtime
    ) -> None:
        runtime.engine.followers.append(lambda _rows: runtime.projection.catch_up())
        runs_in_every_state(runtime.engine)
        assert rows_of(runtime) == expected_rows(runtime)
        assert runtime.projection.rebuild() == runtime.db.head()
        assert rows_of(runtime) == expected_rows(runtime)

    def test_catching_up_twice_changes_nothing(self, runtime: Runtime) -> None:
        runs_in_every_state(runtime.engine)
        position = runtime.projection.catch_up()
        rows = rows_of(runtime)

        assert runtime.projection.catch_up() == position
        assert rows_of(runtime) == rows
        assert tracked(runtime) == position

    def test_a_crash_mid_batch_leaves_neither_rows_nor_tracking_behind(
        self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first, token = claimed_run(runtime.engine)
        before_position = runtime.projection.catch_up()
        before_rows = rows_of(runtime)
        runtime.engine.record_output(first, RUNNER, token, [("step.started", {})])
        runtime.engine.pause_run(first, OWNER)
        runs_in_every_state(runtime.engine)
        crash_after_writing_once(monkeypatch)

        with pytest.raises(Crash):
            runtime.projection.catch_up()

        assert runtime.projection.position == tracked(runtime) == before_position
        assert rows_of(runtime) == before_rows
        assert runtime.projection.catch_up() == runtime.db.head()
        assert rows_of(runtime) == expected_rows(runtime)

    def test_a_restarted_process_resumes_from_the_tracked_position(
        self, runtime: Runtime, store_url: str, tmp_path: Path
    ) -> None:
        run_id, token = claimed_run(runtime.engine)
        position = runtime.projection.catch_up()
        runtime.engine.record_output(run_id, RUNNER, token, [("log", {})])
        runtime.engine.report_outcome(run_id, RUNNER, token, "no_changes")

        restarted = open_runtime(store_url, tmp_path)
        try:
            assert restarted.projection.position == position
            assert restarted.projection.catch_up() == restarted.db.head()
            assert rows_of(restarted) == expected_rows(restarted)
        finally:
            restarted.close()

    def test_two_runners_catching_up_concurrently_apply_each_event_once(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        runners = (runtime, second_runtime)
        committed = [record_committed_batches(r) for r in runners]
        writing, errors = threading.Event(), []
        writing.set()

        def follow(follower: Runtime) -> None:
            try:
                while writing.is_set():
                    follower.projection.catch_up()
                    time.sleep(0.001)
                follower.projection.catch_up()
            except Exception as exc:
                errors.append(exc)

        followers = [threading.Thread(target=follow, args=(r,)) for r in runners]
        for thread in followers:
            thread.start()
        try:
            for round_ in range(6):
                runs_in_every_state(runners[round_ % 2].engine)
        finally:
            writing.clear()
            for thread in followers:
                thread.join(60)

        assert errors == []
        applied = [p for batches in committed for batch in batches for p in batch]
        assert sorted(applied) == [r.position for r in runtime.db.events_after(0, 100_000)]
        assert rows_of(runtime) == expected_rows(runtime)
        assert tracked(runtime) == runtime.db.head()
        assert runtime.projection.position == second_runtime.projection.position == tracked(runtime)

    def test_a_deleted_run_leaves_the_view(self, runtime: Runtime) -> None:
        kept = runtime.engine.submit_run(OWNER, "kept").run_id
        finished, token = claimed_run(runtime.engine, "finished")
        runtime.engine.report_outcome(finished, RUNNER, token, "no_changes")
        active, _ = claimed_run(runtime.engine, "active")
        runtime.projection.catch_up()
        assert view_of(runtime, finished) is not None and view_of(runtime, active) is not None

        runtime.engine.delete_run(finished, OWNER)
        runtime.engine.delete_run(active, OWNER)
        never_seen = runtime.engine.submit_run(OWNER, "short-lived").run_id
        runtime.engine.delete_run(never_seen, OWNER)
        runtime.projection.catch_up()

        assert [row[0] for row in rows_of(runtime)] == [str(kept)]
        assert view_of(runtime, finished) is None and view_of(runtime, never_seen) is None
        assert rows_of(runtime) == expected_rows(runtime)


class Crash(Exception):
    """The process died between writing rows and committing."""


def crash_after_writing_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next batch writes its rows, then the process 'dies' before its commit."""
    original = RunsProjection.apply
    crashed = threading.Event()

    def apply(self: RunsProjection, cur: Cursor, rows: list[StoredRow]) -> None:
        original(self, cur, rows)
        if not crashed.is_set():
            crashed.set()
            raise Crash

    monkeypatch.setattr(RunsProjection, "apply", apply)


def record_committed_batches(runtime: Runtime) -> list[list[int]]:
    """The positions of every batch this runtime's runs projection committed, in order."""
    runner = runtime.projection
    (projection,) = [p for p in runner.projections if isinstance(p, RunsProjection)]
    committed: list[list[int]] = []
    pending: list[int] = []  # applied in the open transaction
    apply, forget = projection.apply, projection.forget

    def applying(cur: Cursor, rows: list[StoredRow]) -> None:
        pending[:] = [r.position for r in rows]
        apply(cur, rows)

    def forgetting() -> None:  # the runner's transaction rolled back
        pending.clear()
        forget()

    def advanced(position: int) -> None:  # the runner's transaction committed
        if pending:
            assert pending[-1] == position
            committed.append(list(pending))
            pending.clear()

    projection.apply = applying  # type: ignore[method-assign]
    projection.forget = forgetting  # type: ignore[method-assign]
    runner.on_advance.append(advanced)
    return committed


class TestSQLiteProjection(ProjectionContract):
    pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


class TestPostgresProjection(ProjectionContract):
    pytestmark = [
        pytest.mark.postgres,
        pytest.mark.parametrize("store_url", ["postgres"], indirect=True),
    ]
