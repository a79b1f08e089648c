"""The board view on both stores: built incrementally it follows each task's run, and a
rebuild from the whole log gives exactly the same rows; a repeated start makes one run."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from adapters import readmodels
from api.service.runtime import Runtime
from domain.errors import Conflict

OWNER, RUNNER = "alice", "runner-1"


def shown(runtime: Runtime, project_id: UUID) -> dict[str, list[str]]:
    """The board as titles per non-empty column, after catching up."""
    runtime.catch_up()
    with runtime.db.reading() as cur:
        board = readmodels.get_board(cur, str(project_id), OWNER)
    assert board is not None
    return {c["name"]: [t["title"] for t in c["tasks"]] for c in board["columns"] if c["tasks"]}


def board_rows(runtime: Runtime) -> list[tuple[Any, ...]]:
    """Every row of the board's views: the tasks, then each board's settings and stamp."""
    with runtime.db.reading() as cur:
        rows = cur.execute("SELECT * FROM board_view ORDER BY task_id").fetchall()
        rows += cur.execute("SELECT * FROM board_settings_view ORDER BY project_id").fetchall()
    return [tuple(r) for r in rows]


def new_task(runtime: Runtime, project_id: UUID, title: str, ready: bool = True) -> str:
    project, _ = runtime.engine.create_task(project_id, OWNER, title, "")
    task_id = list(project.tasks)[-1]
    if ready:
        runtime.engine.move_task(project_id, OWNER, task_id, "ready")
    return task_id


def run_to(runtime: Runtime, run_id: UUID, outcome: str) -> None:
    """Claim the run and report `outcome`."""
    engine = runtime.engine
    _, lease = engine.claim_run(run_id, RUNNER)
    failure = {"category": "agent", "message": "it broke"}
    engine.report_outcome(
        run_id, RUNNER, lease.fencing_token, outcome, tree_hash="abc", failure=failure
    )


def test_the_board_follows_the_runs_and_a_rebuild_gives_the_same_rows(runtime: Runtime) -> None:
    engine = runtime.engine
    project, _ = engine.create_project(OWNER, "board", None, "main")
    pid = project.id
    a, b, c = (new_task(runtime, pid, t) for t in "abc")
    new_task(runtime, pid, "d", ready=False)
    engine.reorder_task(pid, OWNER, c, a, None)
    assert shown(runtime, pid) == {"backlog": ["d"], "ready": ["c", "a", "b"]}

    first = engine.start_task(pid, OWNER, a).run_id
    assert shown(runtime, pid) == {"backlog": ["d"], "ready": ["c", "b"], "in_progress": ["a"]}
    run_to(runtime, first, "failed")
    assert shown(runtime, pid) == {"backlog": ["d"], "ready": ["c", "a", "b"]}
    second = engine.start_task(pid, OWNER, a).run_id
    run_to(runtime, second, "changes")
    engine.start_task(pid, OWNER, b)
    assert shown(runtime, pid) == {
        "backlog": ["d"],
        "ready": ["c"],
        "in_progress": ["b"],
        "in_review": ["a"],
    }
    engine.review_run(second, OWNER, approved=False)
    engine.delete_task(pid, OWNER, c)
    runtime.catch_up()
    live = board_rows(runtime)

    runtime.rebuild()

    assert board_rows(runtime) == live
    assert shown(runtime, pid) == {"backlog": ["d"], "ready": ["a"], "in_progress": ["b"]}


def test_a_start_whose_run_was_not_made_makes_that_run_and_no_other(runtime: Runtime) -> None:
    engine = runtime.engine
    project, _ = engine.create_project(OWNER, "board", None, "main")
    task_id = new_task(runtime, project.id, "once")
    # A crash between recording the start and making the run: only the start is stored.
    engine._update_project(
        project.id,
        OWNER,
        lambda p, now: p.start_task(task_id=task_id, run_status=None, actor=OWNER, now=now),
    )
    recorded = engine.get_project(project.id).task(task_id)["run_id"]

    made = engine.start_task(project.id, OWNER, task_id)

    assert str(made.run_id) == recorded
    assert engine.get_run(made.run_id).task_id == task_id
    with pytest.raises(Conflict) as refused:  # now that its run exists, it is going
        engine.start_task(project.id, OWNER, task_id)
    assert refused.value.status == "pending"
    assert engine.get_project(project.id).task(task_id)["starts"] == 1


def test_a_retry_whose_run_was_not_made_makes_that_run_on_its_repeat(runtime: Runtime) -> None:
    engine = runtime.engine
    project, _ = engine.create_project(OWNER, "board", None, "main")
    task_id = new_task(runtime, project.id, "flaky")
    failed = engine.start_task(project.id, OWNER, task_id).run_id
    run_to(runtime, failed, "failed")
    # A crash between recording the retry and making its run: only the start is stored.
    engine._update_project(
        project.id,
        OWNER,
        lambda p, now: p.retry_task_run(
            task_id=task_id, failed_run_id=str(failed), run_status="failed", actor=OWNER, now=now
        ),
    )
    recorded = engine.get_project(project.id).task(task_id)["run_id"]

    made = engine.retry_run(failed, OWNER)
    again = engine.retry_run(failed, OWNER)  # a repeat while it goes: the same run

    assert str(made.run_id) == recorded == str(again.run_id)
    run = engine.get_run(made.run_id)
    assert (run.task_id, run.retried_from) == (task_id, str(failed))
    assert engine.get_project(project.id).task(task_id)["starts"] == 2
    assert shown(runtime, project.id) == {"in_progress": ["flaky"]}


def test_a_rebuild_keeps_the_failure_of_a_tasks_earlier_run(runtime: Runtime) -> None:
    # Found by tests/property/test_board.py: a rebuild reads the start of the task's next
    # run in the same batch as the earlier run's failure, and must still apply them in order.
    engine = runtime.engine
    project, _ = engine.create_project(OWNER, "board", None, "main")
    task_id = new_task(runtime, project.id, "again")
    run_to(runtime, engine.start_task(project.id, OWNER, task_id).run_id, "failed")
    runtime.catch_up()
    engine.start_task(project.id, OWNER, task_id)
    runtime.catch_up()
    live = board_rows(runtime)

    runtime.rebuild()

    assert board_rows(runtime) == live
    with runtime.db.reading() as cur:
        board = readmodels.get_board(cur, str(project.id), OWNER)
    assert board is not None
    (task,) = next(c["tasks"] for c in board["columns"] if c["name"] == "in_progress")
    assert task["last_failure"]["message"] == "it broke"


def test_a_task_whose_started_run_is_not_made_yet_is_not_moved_or_deleted(
    runtime: Runtime,
) -> None:
    # Found by tests/property/test_board.py: another user's move between a start's record
    # and the making of its run left that run going for a task moved away, started again.
    engine = runtime.engine
    project, _ = engine.create_project(OWNER, "board", None, "main")
    task_id = new_task(runtime, project.id, "once")
    engine._update_project(  # the start is recorded; its run is about to be made
        project.id,
        OWNER,
        lambda p, now: p.start_task(task_id=task_id, run_status=None, actor=OWNER, now=now),
    )

    for refused in (
        lambda: engine.move_task(project.id, OWNER, task_id, "backlog"),
        lambda: engine.delete_task(project.id, OWNER, task_id),
    ):
        with pytest.raises(Conflict) as going:
            refused()
        assert going.value.status == "pending"
    made = engine.start_task(project.id, OWNER, task_id)
    assert str(made.run_id) == engine.get_project(project.id).task(task_id)["run_id"]
