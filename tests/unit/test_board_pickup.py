"""Auto-pickup and ready-all on the Project aggregate: given a board, when a command, then
events or an error."""

from __future__ import annotations

import pytest

from domain.board import PICKUP_ACTOR, task_run_id
from domain.errors import Invalid
from domain.projects import Project
from tests.unit.test_board import NOW, OWNER, appended, given_board


def with_pickup(project: Project, limit: int) -> Project:
    """The board with auto-pickup on under `limit`."""
    project.change_settings(auto_pickup=True, max_concurrent_runs=limit, actor=OWNER, now=NOW)
    project.collect_events()
    return project


def started(project: Project, task: str) -> str:
    """Start a ready task by hand; its run id."""
    run_id = project.start_task(task_id=task, run_status=None, actor=OWNER, now=NOW)
    project.collect_events()
    return str(run_id)


def test_a_board_starts_with_auto_pickup_off_and_a_limit_of_one() -> None:
    assert given_board().board_settings == {"auto_pickup": False, "max_concurrent_runs": 1}


def test_changing_the_settings_records_them_once() -> None:
    project = given_board()

    project.change_settings(auto_pickup=True, max_concurrent_runs=3, actor=OWNER, now=NOW)
    project.change_settings(auto_pickup=True, max_concurrent_runs=3, actor=OWNER, now=NOW)

    assert appended(project) == ["backlog.settings_changed"]
    assert project.board_settings == {"auto_pickup": True, "max_concurrent_runs": 3}


@pytest.mark.parametrize("limit", [0, 51, -1])
def test_a_limit_outside_one_to_fifty_is_invalid(limit: int) -> None:
    project = given_board()
    with pytest.raises(Invalid) as refused:
        project.change_settings(auto_pickup=True, max_concurrent_runs=limit, actor=OWNER, now=NOW)
    assert refused.value.field == "max_concurrent_runs"
    assert appended(project) == []


def test_ready_all_moves_the_backlog_to_the_bottom_of_ready_in_its_order() -> None:
    project = given_board("a", "b", "c", "d", ready=("c",))

    moved = project.ready_all(actor=OWNER, now=NOW)

    assert moved == ["a", "b", "d"]
    assert appended(project) == ["backlog.task_moved"] * 3
    assert project.columns == {"backlog": [], "ready": ["c", "a", "b", "d"], "archived": []}


def test_ready_all_on_an_empty_backlog_appends_nothing() -> None:
    project = given_board("a", ready=("a",))
    assert project.ready_all(actor=OWNER, now=NOW) == []
    assert appended(project) == []


def test_pickup_starts_nothing_while_it_is_off() -> None:
    project = given_board("a", ready=("a",))
    assert project.pick_up(statuses={}, actor=PICKUP_ACTOR, now=NOW) == []
    assert appended(project) == []


def test_pickup_starts_the_top_ready_tasks_up_to_the_limit() -> None:
    project = with_pickup(given_board("a", "b", "c", ready=("b", "a", "c")), 2)

    picked = project.pick_up(statuses={}, actor=PICKUP_ACTOR, now=NOW)

    assert picked == [
        ("b", task_run_id(project.id, "b", 1)),
        ("a", task_run_id(project.id, "a", 1)),
    ]
    events = project.collect_events()
    assert [(e.wire_type(), e.task_id, e.actor) for e in events] == [
        ("backlog.task_started", "b", PICKUP_ACTOR),
        ("backlog.task_started", "a", PICKUP_ACTOR),
    ]


def test_active_runs_and_runs_not_made_yet_take_room_under_the_limit() -> None:
    project = with_pickup(given_board("a", "b", "c", "d", ready=("a", "b", "c", "d")), 3)
    going, unmade = started(project, "a"), started(project, "b")

    picked = project.pick_up(
        statuses={going: "awaiting_review", unmade: None}, actor=PICKUP_ACTOR, now=NOW
    )

    assert [task for task, _ in picked] == ["c"]
    assert project.unmade_runs({going: "awaiting_review", unmade: None}) == [
        ("b", task_run_id(project.id, "b", 1))
    ]


def test_ended_runs_leave_room_and_their_tasks_are_not_started_again() -> None:
    project = with_pickup(given_board("a", "b", "c", ready=("a", "b", "c")), 1)
    done, failed = started(project, "a"), started(project, "b")

    picked = project.pick_up(statuses={failed: "failed"}, actor=PICKUP_ACTOR, now=NOW)

    assert done not in {str(run) for _, run in picked}
    assert [task for task, _ in picked] == ["c"]


def test_a_full_board_starts_nothing() -> None:
    project = with_pickup(given_board("a", "b", ready=("a", "b")), 1)
    going = started(project, "a")
    assert project.pick_up(statuses={going: "in_progress"}, actor=PICKUP_ACTOR, now=NOW) == []
    assert appended(project) == []


def test_a_deleted_project_starts_and_makes_nothing() -> None:
    project = with_pickup(given_board("a", "b", ready=("a", "b")), 2)
    unmade = started(project, "a")
    project.delete(actor=OWNER, now=NOW)
    project.collect_events()

    assert project.pick_up(statuses={unmade: None}, actor=PICKUP_ACTOR, now=NOW) == []
    assert project.unmade_runs({unmade: None}) == []
