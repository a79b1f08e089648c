"""The auto-pickup policy on both stores, in process: it starts the top ready tasks within
the limit, finishes a start whose run a crash left unmade without starting anything
again, and two sweepers racing each other start every task exactly once."""

from __future__ import annotations

import threading
from uuid import UUID

from api.service.pickup import BoardPickup
from api.service.runtime import Runtime
from domain.board import PICKUP_ACTOR, task_run_id
from tests.integration.test_board_view import OWNER, new_task, run_to, shown


def pickup_board(runtime: Runtime, titles: str, limit: int) -> tuple[UUID, list[str]]:
    """A project whose ready column holds one task per letter of `titles`, with
    auto-pickup on under `limit`; its id and the task ids."""
    project, _ = runtime.engine.create_project(OWNER, "pickup", None, "main")
    tasks = [new_task(runtime, project.id, title) for title in titles]
    runtime.engine.change_board_settings(project.id, OWNER, True, limit)
    return project.id, tasks


def tick(runtime: Runtime) -> None:
    """The policy's step, over read models that are caught up."""
    runtime.catch_up()
    BoardPickup(runtime.db, runtime.engine).tick()
    runtime.catch_up()


def started_tasks(runtime: Runtime, project_id: UUID) -> list[str]:
    """The task of every recorded start, in order."""
    project = runtime.engine.get_project(project_id)
    events = runtime.engine.repository.event_store.get(project.id)
    return [e.task_id for e in events if e.wire_type() == "backlog.task_started"]


def test_the_policy_starts_the_top_tasks_within_the_limit_and_more_as_runs_end(
    runtime: Runtime,
) -> None:
    pid, (a, b, c) = pickup_board(runtime, "abc", 2)

    tick(runtime)
    assert shown(runtime, pid) == {"ready": ["c"], "in_progress": ["a", "b"]}
    tick(runtime)
    assert started_tasks(runtime, pid) == [a, b]

    run_to(runtime, task_run_id(pid, a, 1), "no_changes")
    tick(runtime)
    assert shown(runtime, pid) == {"in_progress": ["b", "c"], "done": ["a"]}
    assert started_tasks(runtime, pid) == [a, b, c]
    run = runtime.engine.get_run(task_run_id(pid, c, 1))
    assert (run.task_id, run.status) == (c, "pending")


def test_a_start_whose_run_a_crash_left_unmade_is_finished_and_nothing_starts_twice(
    runtime: Runtime,
) -> None:
    pid, (a, b, _) = pickup_board(runtime, "abc", 2)
    # The crash: the policy recorded its starts on the project, then died before it
    # made their runs.
    runtime.engine._update_project(
        pid,
        None,
        lambda p, now: p.pick_up(statuses={}, actor=PICKUP_ACTOR, now=now),
    )
    assert started_tasks(runtime, pid) == [a, b]
    assert shown(runtime, pid) == {"ready": ["c"], "in_progress": ["a", "b"]}

    tick(runtime)  # after a restart

    assert started_tasks(runtime, pid) == [a, b]  # c waits: the unmade two take the room
    for task in (a, b):
        run = runtime.engine.get_run(task_run_id(pid, task, 1))
        assert (run.task_id, run.status, run.project_id) == (task, "pending", str(pid))
    with runtime.db.reading() as cur:
        rows = cur.execute(
            "SELECT COUNT(*) FROM runs_view WHERE project_id = ?", (str(pid),)
        ).fetchone()
    assert rows[0] == 2


def race(policies: list[BoardPickup]) -> None:
    """Every policy ticks at once (released together by a barrier), a few times over."""
    barrier = threading.Barrier(len(policies))
    errors: list[BaseException] = []

    def sweep(policy: BoardPickup) -> None:
        try:
            barrier.wait(10)
            for _ in range(3):
                policy.tick()
        except BaseException as exc:  # said by the test, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(p,)) for p in policies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_two_processes_sweeping_at_once_start_every_task_exactly_once(
    runtime: Runtime, second_runtime: Runtime
) -> None:
    pid, tasks = pickup_board(runtime, "abcdefgh", 3)
    policies = [BoardPickup(rt.db, rt.engine) for rt in (runtime, second_runtime)]
    for _ in range(3 * len(tasks)):
        runtime.catch_up()
        race(policies)
        statuses = {
            task: runtime.engine.get_run(task_run_id(pid, task, 1)).status
            for task in started_tasks(runtime, pid)
        }
        assert sum(status != "completed" for status in statuses.values()) <= 3
        pending = [task for task, status in statuses.items() if status == "pending"]
        if not pending:
            break
        run_to(runtime, task_run_id(pid, pending[0], 1), "no_changes")

    assert started_tasks(runtime, pid) == tasks  # each once, top first
    assert shown(runtime, pid) == {"done": list("abcdefgh")}
