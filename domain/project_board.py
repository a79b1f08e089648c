"""A project's board: its tasks, their columns and order, on the Project's own stream.

Board events carry the project's id (API.md: project-level events) and are ordered by the
Project aggregate's version: one consistent order per column, concurrent edits retried by
the engine's load-decide-save loop. `ProjectEvent` is the base of every Project event
(`Project.Event`); `BoardCommands` is mixed into `Project` (domain/projects.py), which
names the events below as its attributes. An event's `apply` only changes state.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.board import (
    ACTIVE_RUN,
    BACKLOG,
    COLUMNS,
    DONE_RUN,
    FAILED_RUN,
    READY,
    check_idle,
    check_text,
    placement,
    task_run_id,
)
from domain.errors import Conflict, Invalid, NotFound
from domain.events import WireNamed

if TYPE_CHECKING:
    from domain.projects import Project


class ProjectEvent(WireNamed, Aggregate.Event):
    """Every project event names who caused it."""

    actor: str


def _remove(project: Project, task_id: str) -> None:
    column = project.tasks[task_id]["column"]
    project.columns[column].remove(task_id)


class TaskCreated(ProjectEvent):
    """A task was added at the bottom of the backlog."""

    TYPE = "backlog.task_created"
    task_id: str
    title: str
    description: str

    def apply(self, project: Project) -> None:
        project.tasks[self.task_id] = {
            "title": self.title,
            "description": self.description,
            "column": BACKLOG,
            "run_id": None,
            "starts": 0,
        }
        project.columns[BACKLOG].append(self.task_id)


class TaskEdited(ProjectEvent):
    """A task's title and/or description changed (`changes` holds only those)."""

    TYPE = "backlog.task_edited"
    task_id: str
    changes: dict[str, str]

    def apply(self, project: Project) -> None:
        project.tasks[self.task_id].update(self.changes)


PICKUP = ("board-pickup",)  # the auto-pickup policy's loop acts on these


class TaskMoved(ProjectEvent):
    """A task went to the bottom (`position`) of another column, leaving its last run."""

    TYPE = "backlog.task_moved"
    WAKES = PICKUP
    task_id: str
    column: str
    position: int

    def apply(self, project: Project) -> None:
        _remove(project, self.task_id)
        project.columns[self.column].insert(self.position, self.task_id)
        project.tasks[self.task_id].update(column=self.column, run_id=None)


class TaskReordered(ProjectEvent):
    """A task took `position` in its column, right before or after another task."""

    TYPE = "backlog.task_reordered"
    task_id: str
    column: str
    position: int
    before_task_id: str | None
    after_task_id: str | None

    def apply(self, project: Project) -> None:
        _remove(project, self.task_id)
        project.columns[self.column].insert(self.position, self.task_id)


class TaskDeleted(ProjectEvent):
    """A task was removed from the board (its events stay)."""

    TYPE = "backlog.task_deleted"
    task_id: str

    def apply(self, project: Project) -> None:
        _remove(project, self.task_id)
        del project.tasks[self.task_id]


class TaskStarted(ProjectEvent):
    """A ready task's `start`-th run was submitted under `run_id` (recorded before the run
    is made, so the run's id is known and a repeated start makes no second run). v2 adds
    the task's failed run that this run retries (`retried_from`), None for a start."""

    TYPE = "backlog.task_started"
    class_version = 2
    task_id: str
    run_id: str
    start: int
    retried_from: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["retried_from"] = None

    def apply(self, project: Project) -> None:
        project.tasks[self.task_id].update(
            run_id=self.run_id, starts=self.start, retried_from=self.retried_from
        )


BOARD_EVENTS = (
    TaskCreated,
    TaskEdited,
    TaskMoved,
    TaskReordered,
    TaskDeleted,
    TaskStarted,
)


class BoardCommands:
    """The board's commands; `run_status` is the status of the task's last run, as the
    caller read it (None when it has none), since a task's run decides what it may do."""

    if TYPE_CHECKING:
        id: UUID
        tasks: dict[str, dict[str, Any]]
        columns: dict[str, list[str]]

        def trigger_event(self, event_class: Any, **kwargs: Any) -> None: ...

    def task(self, task_id: str) -> dict[str, Any]:
        """One task's state; NotFound when the board has no such task."""
        task = self.tasks.get(task_id)
        if task is None:
            raise NotFound("No such task.")
        return task

    def create_task(
        self, *, task_id: str, title: str, description: str, actor: str, now: datetime
    ) -> None:
        """Add a task at the bottom of the backlog."""
        check_text(title, description)
        if task_id in self.tasks:
            raise Conflict("A task with that id exists.", self.tasks[task_id]["column"])
        self.trigger_event(
            TaskCreated,
            timestamp=now,
            actor=actor,
            task_id=task_id,
            title=title,
            description=description,
        )

    def edit_task(
        self,
        *,
        task_id: str,
        title: str | None,
        description: str | None,
        actor: str,
        now: datetime,
    ) -> None:
        """Change a task's title or description; only real changes are recorded."""
        task = self.task(task_id)
        check_text(title, description)
        wanted = {"title": title, "description": description}
        changes = {k: v for k, v in wanted.items() if v is not None and task[k] != v}
        if changes:
            self.trigger_event(
                TaskEdited, timestamp=now, actor=actor, task_id=task_id, changes=changes
            )

    def move_task(
        self, *, task_id: str, column: str, run_status: str | None, actor: str, now: datetime
    ) -> None:
        """Move a task to the bottom of another column (nothing if it is there already and
        has no run); a task whose run is going stays where it is."""
        if column not in COLUMNS:
            raise Invalid(f"No such column: {column}.", "column")
        task = self.task(task_id)
        check_idle(task["column"], run_status)
        if task["column"] == column and task["run_id"] is None:
            return
        position = len([t for t in self.columns[column] if t != task_id])
        self.trigger_event(
            TaskMoved,
            timestamp=now,
            actor=actor,
            task_id=task_id,
            column=column,
            position=position,
        )

    def reorder_task(
        self,
        *,
        task_id: str,
        before_task_id: str | None,
        after_task_id: str | None,
        actor: str,
        now: datetime,
    ) -> None:
        """Place a task right before or after another task of its column (nothing if it
        is there already)."""
        column = self.task(task_id)["column"]
        order = self.columns[column]
        position = placement(order, task_id, before_task_id, after_task_id)
        if order.index(task_id) == position:
            return
        self.trigger_event(
            TaskReordered,
            timestamp=now,
            actor=actor,
            task_id=task_id,
            column=column,
            position=position,
            before_task_id=before_task_id,
            after_task_id=after_task_id,
        )

    def delete_task(
        self, *, task_id: str, run_status: str | None, actor: str, now: datetime
    ) -> None:
        """Remove a task whose run (if any) is not going."""
        task = self.task(task_id)
        check_idle(task["column"], run_status)
        self.trigger_event(TaskDeleted, timestamp=now, actor=actor, task_id=task_id)

    def start_task(
        self, *, task_id: str, run_status: str | None, actor: str, now: datetime
    ) -> UUID:
        """Record the start of a ready task's next run; its id. A ready task may start when
        it has no run yet or its last run failed; not while one goes or once one is done."""
        task = self.task(task_id)
        if task["column"] != READY:
            raise Conflict("Only a ready task can be started.", task["column"])
        if run_status in ACTIVE_RUN or run_status in DONE_RUN:
            raise Conflict("The task has a run already.", run_status or READY)
        if task["run_id"] is not None and run_status not in FAILED_RUN:
            raise Conflict("The task's run is being created.", "pending")
        return self._record_start(task_id, None, actor, now)

    def retry_task_run(
        self, *, task_id: str, failed_run_id: str, run_status: str | None, actor: str, now: datetime
    ) -> UUID | None:
        """Record a retry of a task's failed run as the task's next start; the new run's id.

        `run_status` is the status of the task's current run. A repeat of the retry while
        the run it recorded is going (or not made yet: a crash between the two) gives that
        run again, so a retry makes one run. None when the failed run is no longer the
        task's (the task was moved, deleted or started again since): the retry is then
        no concern of the board."""
        task = self.tasks.get(task_id)
        if task is None or task["run_id"] is None:
            return None
        if task["run_id"] != failed_run_id:
            repeat = task.get("retried_from") == failed_run_id
            going = run_status is None or run_status in ACTIVE_RUN
            return UUID(task["run_id"]) if repeat and going else None
        if run_status not in FAILED_RUN:
            raise Conflict("Only a failed run can be retried.", run_status or "pending")
        return self._record_start(task_id, failed_run_id, actor, now)

    def _record_start(
        self, task_id: str, retried_from: str | None, actor: str, now: datetime
    ) -> UUID:
        """Record the task's next start (a retry of `retried_from`, if given); its run's
        id, derived from (project, task, start count)."""
        start = self.tasks[task_id]["starts"] + 1
        run_id = task_run_id(self.id, task_id, start)
        self.trigger_event(
            TaskStarted,
            timestamp=now,
            actor=actor,
            task_id=task_id,
            run_id=str(run_id),
            start=start,
            retried_from=retried_from,
        )
        return run_id

    def ready_all(self, *, actor: str, now: datetime) -> list[str]:
        """Move every backlog task to the bottom of `ready`, in their order; their ids.
        (A backlog task has no run: only a ready task starts, and a move leaves its run.)"""
        moved = list(self.columns[BACKLOG])
        for task_id in moved:
            self.move_task(task_id=task_id, column=READY, run_status=None, actor=actor, now=now)
        return moved
