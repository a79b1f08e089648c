"""The coordination policy's sweep, in-process on both stores: every moving plan moves on,
however many others are moving (a plan's children may run for hours, so plans that wait
on them stay `dispatching` and are swept again and again)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from api.service.runtime import Runtime

OWNER = "alice"
ONE_SUBTASK = [{"key": "a", "title": "a", "depends_on": []}]
MOVING = 1000  # plans whose children are all busy


def coordinator(runtime: Runtime) -> UUID:
    """A run made a coordinator of one subtask."""
    engine = runtime.engine
    run_id = engine.submit_run(OWNER, "t").run_id
    engine.set_work_plan(
        run_id, OWNER, subtasks=ONE_SUBTASK, auto_approve_children=True, integration_branch=None
    )
    return run_id


def subtask(runtime: Runtime, run_id: UUID) -> dict[str, Any]:
    plan = runtime.engine.get_run(run_id).plan
    assert plan is not None
    return dict(plan["subtasks"]["a"])


def test_a_plan_set_while_a_thousand_others_wait_on_their_children_is_dispatched(
    runtime: Runtime,
) -> None:
    busy = [coordinator(runtime) for _ in range(MOVING)]
    runtime.catch_up()
    runtime.coordination.tick()  # each gets its child, which runners then work on for long
    runtime.catch_up()
    assert {subtask(runtime, run_id)["status"] for run_id in busy} == {"dispatched"}

    late = coordinator(runtime)
    runtime.catch_up()
    for _ in range(3):
        runtime.coordination.tick()
        runtime.catch_up()

    assert subtask(runtime, late)["status"] == "dispatched"
