"""The engine's cheap copy of a cached project: equal to a deep copy, and independent of the
original, so a command deciding on the copy never changes the cached aggregate."""

from __future__ import annotations

from copy import deepcopy
from datetime import UTC, datetime
from uuid import uuid4

from api.service.project_commands import copy_project
from domain.projects import Project

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def given_project() -> Project:
    """A saved project with settings and three tasks, one of them ready."""
    project = Project.create(
        project_id=uuid4(),
        owner="alice",
        name="shop",
        repository_path=None,
        default_branch="main",
        now=NOW,
    )
    project.update(changes={"settings": {"labels": ["a", "b"]}}, actor="alice", now=NOW)
    for task in ("t1", "t2", "t3"):
        project.create_task(task_id=task, title=task, description="", actor="alice", now=NOW)
    project.move_task(task_id="t2", column="ready", run_status=None, actor="alice", now=NOW)
    project.collect_events()
    return project


def test_a_copy_equals_a_deep_copy() -> None:
    project = given_project()

    assert copy_project(project) == deepcopy(project)


def test_commands_on_a_copy_leave_the_original_as_it_was() -> None:
    project = given_project()
    before = deepcopy(project)

    copy = copy_project(project)
    copy.reorder_task(task_id="t3", before_task_id="t1", after_task_id=None, actor="a", now=NOW)
    copy.edit_task(task_id="t1", title="new", description=None, actor="alice", now=NOW)
    copy.move_task(task_id="t1", column="ready", run_status=None, actor="alice", now=NOW)
    copy.settings["labels"].append("c")

    assert project == before
    assert copy.pending_events and not project.pending_events


def test_a_task_field_that_is_not_a_plain_value_is_copied_deeply() -> None:
    project = given_project()
    project.tasks["t1"]["links"] = ["t2"]

    copy = copy_project(project)
    copy.tasks["t1"]["links"].append("t3")

    assert project.tasks["t1"]["links"] == ["t2"]
