"""The board on the Project aggregate: given a board, when a command, then events or an error."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.board import run_task, task_run_id
from domain.errors import Conflict, Invalid, NotFound
from domain.projects import Project

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OWNER = "alice"


def given_board(*tasks: str, ready: tuple[str, ...] = ()) -> Project:
    """A project whose backlog holds `tasks` (in order), with `ready` moved to ready."""
    project = Project.create(
        project_id=uuid4(),
        owner=OWNER,
        name="shop",
        repository_path=None,
        default_branch="main",
        now=NOW,
    )
    for task in tasks:
        project.create_task(task_id=task, title=task, description="", actor=OWNER, now=NOW)
    for task in ready:
        project.move_task(task_id=task, column="ready", run_status=None, actor=OWNER, now=NOW)
    project.collect_events()
    return project


def appended(project: Project) -> list[str]:
    """The wire types of the events the command under test appended."""
    return [event.wire_type() for event in project.collect_events()]


def test_a_new_task_goes_to_the_bottom_of_the_backlog() -> None:
    project = given_board("a", "b")

    project.create_task(task_id="c", title="Fix", description="it", actor=OWNER, now=NOW)

    assert appended(project) == ["backlog.task_created"]
    assert project.columns["backlog"] == ["a", "b", "c"]
    assert project.task("c") == {
        "title": "Fix",
        "description": "it",
        "column": "backlog",
        "run_id": None,
        "starts": 0,
    }


def test_a_task_with_a_blank_title_is_invalid() -> None:
    project = given_board()
    with pytest.raises(Invalid) as refused:
        project.create_task(task_id="a", title=" ", description="", actor=OWNER, now=NOW)
    assert refused.value.field == "title"


def test_a_task_entering_a_column_goes_to_its_bottom() -> None:
    project = given_board("a", "b", "c", ready=("b",))

    project.move_task(task_id="a", column="ready", run_status=None, actor=OWNER, now=NOW)

    assert appended(project) == ["backlog.task_moved"]
    assert project.columns == {"backlog": ["c"], "ready": ["b", "a"], "archived": []}


def test_moving_a_task_to_its_own_column_appends_nothing() -> None:
    project = given_board("a", ready=("a",))
    project.move_task(task_id="a", column="ready", run_status=None, actor=OWNER, now=NOW)
    assert appended(project) == []


def test_moving_to_an_unknown_column_is_invalid_and_an_unknown_task_not_found() -> None:
    project = given_board("a")
    with pytest.raises(Invalid):
        project.move_task(task_id="a", column="done", run_status=None, actor=OWNER, now=NOW)
    with pytest.raises(NotFound):
        project.move_task(task_id="x", column="ready", run_status=None, actor=OWNER, now=NOW)


def test_a_task_whose_run_is_going_cannot_be_moved_or_deleted() -> None:
    project = given_board("a", ready=("a",))
    project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)
    project.collect_events()
    with pytest.raises(Conflict) as refused:
        project.move_task(task_id="a", column="archived", run_status="paused", actor=OWNER, now=NOW)
    assert refused.value.status == "paused"
    with pytest.raises(Conflict):
        project.delete_task(task_id="a", run_status="in_progress", actor=OWNER, now=NOW)


@pytest.mark.parametrize(
    ("before", "after", "order"),
    [
        ("a", None, ["c", "a", "b", "d"]),
        (None, "a", ["a", "c", "b", "d"]),
        (None, "d", ["a", "b", "d", "c"]),
        ("d", None, ["a", "b", "c", "d"]),
    ],
)
def test_reordering_places_the_task_right_before_or_after_another(
    before: str | None, after: str | None, order: list[str]
) -> None:
    project = given_board("a", "b", "c", "d")

    project.reorder_task(
        task_id="c", before_task_id=before, after_task_id=after, actor=OWNER, now=NOW
    )

    assert project.columns["backlog"] == order
    assert appended(project) == (
        [] if order == ["a", "b", "c", "d"] else ["backlog.task_reordered"]
    )


@pytest.mark.parametrize(
    ("before", "after"), [(None, None), ("a", "b"), ("c", None), (None, "x"), ("b", None)]
)
def test_reordering_needs_exactly_one_other_task_of_the_same_column(
    before: str | None, after: str | None
) -> None:
    project = given_board("a", "b", "c", ready=("c",))
    with pytest.raises(Invalid):
        project.reorder_task(
            task_id="b", before_task_id=before, after_task_id=after, actor=OWNER, now=NOW
        )
    assert appended(project) == []


def test_editing_records_only_real_changes() -> None:
    project = given_board("a")

    project.edit_task(task_id="a", title="a", description="more", actor=OWNER, now=NOW)

    events = project.collect_events()
    assert [e.wire_type() for e in events] == ["backlog.task_edited"]
    assert events[0].changes == {"description": "more"}  # type: ignore[attr-defined]
    project.edit_task(task_id="a", title=None, description="more", actor=OWNER, now=NOW)
    assert appended(project) == []


def test_deleting_a_task_removes_it_from_its_column() -> None:
    project = given_board("a", "b")
    project.delete_task(task_id="a", run_status=None, actor=OWNER, now=NOW)
    assert appended(project) == ["backlog.task_deleted"]
    assert project.columns["backlog"] == ["b"] and "a" not in project.tasks


def test_starting_a_ready_task_records_its_first_runs_derived_id() -> None:
    project = given_board("a", ready=("a",))

    run_id = project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)

    assert appended(project) == ["backlog.task_started"]
    assert run_id == task_run_id(project.id, "a", 1)
    assert project.task("a")["run_id"] == str(run_id)


@pytest.mark.parametrize("column", ["backlog", "archived"])
def test_starting_a_task_that_is_not_ready_is_a_conflict(column: str) -> None:
    project = given_board("a")
    if column != "backlog":
        project.move_task(task_id="a", column=column, run_status=None, actor=OWNER, now=NOW)
    with pytest.raises(Conflict) as refused:
        project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)
    assert refused.value.status == column


@pytest.mark.parametrize("status", ["pending", "awaiting_review", "merged", "completed"])
def test_a_task_whose_run_goes_on_or_is_done_cannot_start_again(status: str) -> None:
    project = given_board("a", ready=("a",))
    project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)
    with pytest.raises(Conflict):
        project.start_task(task_id="a", run_status=status, actor=OWNER, now=NOW)


def test_a_task_whose_run_failed_starts_a_second_run_under_another_id() -> None:
    project = given_board("a", ready=("a",))
    first = project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)

    second = project.start_task(task_id="a", run_status="failed", actor=OWNER, now=NOW)

    assert second == task_run_id(project.id, "a", 2) != first


def test_a_started_task_whose_run_is_not_made_yet_cannot_start_again() -> None:
    project = given_board("a", ready=("a",))
    project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)
    with pytest.raises(Conflict):
        project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)


def test_moving_a_done_task_leaves_its_run() -> None:
    project = given_board("a", ready=("a",))
    project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)

    project.move_task(task_id="a", column="archived", run_status="merged", actor=OWNER, now=NOW)

    assert project.task("a")["column"] == "archived" and project.task("a")["run_id"] is None


def test_the_run_task_is_the_title_then_a_blank_line_and_the_description() -> None:
    assert run_task("Fix", "") == "Fix"
    assert run_task("Fix", "the bug") == "Fix\n\nthe bug"


def test_the_board_rebuilt_from_its_events_equals_the_live_one() -> None:
    project = Project.create(
        project_id=uuid4(), owner=OWNER, name="s", repository_path=None, default_branch="m", now=NOW
    )
    for task in ("a", "b", "c"):
        project.create_task(task_id=task, title=task, description="", actor=OWNER, now=NOW)
    for task in ("b", "c"):
        project.move_task(task_id=task, column="ready", run_status=None, actor=OWNER, now=NOW)
    project.reorder_task(task_id="c", before_task_id="b", after_task_id=None, actor=OWNER, now=NOW)
    project.start_task(task_id="c", run_status=None, actor=OWNER, now=NOW)
    project.delete_task(task_id="a", run_status=None, actor=OWNER, now=NOW)

    rebuilt = None
    for event in project.collect_events():
        rebuilt = event.mutate(rebuilt)

    assert rebuilt is not None
    assert (rebuilt.columns, rebuilt.tasks) == (project.columns, project.tasks)
    assert rebuilt.columns == {"backlog": [], "ready": ["c", "b"], "archived": []}


def given_failed_start(*tasks: str) -> tuple[Project, str]:
    """A board whose ready task `a` was started once (its run failed, as the caller says)."""
    project = given_board("a", *tasks, ready=("a", *tasks))
    first = project.start_task(task_id="a", run_status=None, actor=OWNER, now=NOW)
    project.collect_events()
    return project, str(first)


def test_retrying_a_tasks_failed_run_records_its_next_start_retried_from_it() -> None:
    project, failed = given_failed_start()

    run_id = project.retry_task_run(
        task_id="a", failed_run_id=failed, run_status="failed", actor=OWNER, now=NOW
    )

    events = project.collect_events()
    assert [e.wire_type() for e in events] == ["backlog.task_started"]
    assert events[0].retried_from == failed  # type: ignore[attr-defined]
    assert run_id == task_run_id(project.id, "a", 2)
    assert project.task("a")["run_id"] == str(run_id) and project.task("a")["starts"] == 2


def test_retrying_a_tasks_run_that_has_not_failed_is_a_conflict() -> None:
    project, failed = given_failed_start()
    with pytest.raises(Conflict) as refused:
        project.retry_task_run(
            task_id="a", failed_run_id=failed, run_status="in_progress", actor=OWNER, now=NOW
        )
    assert refused.value.status == "in_progress" and appended(project) == []


@pytest.mark.parametrize("status", [None, "pending", "in_progress", "awaiting_review"])
def test_a_repeated_retry_while_its_run_goes_or_is_not_made_gives_that_run(
    status: str | None,
) -> None:
    project, failed = given_failed_start()
    first = project.retry_task_run(
        task_id="a", failed_run_id=failed, run_status="failed", actor=OWNER, now=NOW
    )
    project.collect_events()

    again = project.retry_task_run(
        task_id="a", failed_run_id=failed, run_status=status, actor=OWNER, now=NOW
    )

    assert again == first and appended(project) == []


@pytest.mark.parametrize("status", ["failed", "cancelled", "merged", "completed"])
def test_a_repeated_retry_once_its_run_ended_is_no_concern_of_the_board(status: str) -> None:
    project, failed = given_failed_start()
    project.retry_task_run(
        task_id="a", failed_run_id=failed, run_status="failed", actor=OWNER, now=NOW
    )
    project.collect_events()

    again = project.retry_task_run(
        task_id="a", failed_run_id=failed, run_status=status, actor=OWNER, now=NOW
    )

    assert again is None and appended(project) == []


def test_a_retry_after_the_task_was_moved_deleted_or_restarted_is_not_the_boards() -> None:
    project, failed = given_failed_start("b", "c")
    for task in ("b", "c"):
        project.start_task(task_id=task, run_status=None, actor=OWNER, now=NOW)
    moved, restarted = project.task("b")["run_id"], project.task("c")["run_id"]
    project.move_task(task_id="b", column="backlog", run_status="failed", actor=OWNER, now=NOW)
    project.start_task(task_id="c", run_status="failed", actor=OWNER, now=NOW)
    project.delete_task(task_id="a", run_status="failed", actor=OWNER, now=NOW)
    project.collect_events()

    for task, run_id in (("a", failed), ("b", moved), ("c", restarted)):
        retried = project.retry_task_run(
            task_id=task, failed_run_id=run_id, run_status="failed", actor=OWNER, now=NOW
        )
        assert retried is None, task
    assert appended(project) == []
