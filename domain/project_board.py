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
    check_settings,
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
    is made, so the run's id is known and a repeated start makes no second run)."""

    TYPE = "backlog.task_started"
    task_id: str
    run_id: str
    start: int

    def apply(self, project: Project) -> None:
        project.tasks[self.task_id].update(run_id=self.run_id, starts=self.start)


class SettingsChanged(ProjectEvent):
    """The board's auto-pickup settings: whether the engine starts ready tasks, top first,
    and how many of the board's runs may be active at once when it does."""

    TYPE = "backlog.settings_changed"
    WAKES = PICKUP
    auto_pickup: bool
    max_concurrent_runs: int

    def apply(self, project: Project) -> None:
        project.board_settings = {
            "auto_pickup": self.auto_pickup,
            "max_concurrent_runs": self.max_concurrent_runs,
        }


BOARD_EVENTS = (
    TaskCreated,
    TaskEdited,
    TaskMoved,
    TaskReordered,
    TaskDeleted,
    TaskStarted,
    SettingsChanged,
)


class BoardCommands:
    """The board's commands; `run_status` is the status of the task's last run, as the
    caller read it (None when it has none), since a task's run decides what it may do."""

    if TYPE_CHECKING:
        id: UUID
        deleted: bool
        tasks: dict[str, dict[str, Any]]
        columns: dict[str, list[str]]
        board_settings: dict[str, Any]

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
        start = task["starts"] + 1
        run_id = task_run_id(self.id, task_id, start)
        self.trigger_event(
            TaskStarted,
            timestamp=now,
            actor=actor,
            task_id=task_id,
            run_id=str(run_id),
            start=start,
        )
        return run_id

    def ready_all(self, *, actor: str, now: datetime) -> list[str]:
        """Move every backlog task to the bottom of `ready`, in their order; their ids.
        (A backlog task has no run: only a ready task starts, and a move leaves its run.)"""
        moved = list(self.columns[BACKLOG])
        for task_id in moved:
            self.move_task(task_id=task_id, column=READY, run_status=None, actor=actor, now=now)
        return moved

    def change_settings(
        self, *, auto_pickup: bool, max_concurrent_runs: int, actor: str, now: datetime
    ) -> None:
        """Turn auto-pickup on or off and set its limit (nothing if they are so already)."""
        check_settings(max_concurrent_runs)
        wanted = {"auto_pickup": auto_pickup, "max_concurrent_runs": max_concurrent_runs}
        if wanted != self.board_settings:
            self.trigger_event(SettingsChanged, timestamp=now, actor=actor, **wanted)

    def unmade_runs(self, statuses: dict[str, str | None]) -> list[tuple[str, UUID]]:
        """The started tasks whose run is not made yet (`statuses` maps their run ids to
        None), with those runs' ids, top first; none once the project is deleted."""
        if self.deleted:
            return []
        return [
            (task_id, UUID(task["run_id"]))
            for column in self.columns.values()
            for task_id in column
            if (task := self.tasks[task_id])["run_id"] is not None
            and task["run_id"] in statuses
            and statuses[task["run_id"]] is None
        ]

    def pick_up(
        self, *, statuses: dict[str, str | None], actor: str, now: datetime
    ) -> list[tuple[str, UUID]]:
        """With auto-pickup on, start ready tasks that never ran, top first, while fewer of
        the board's runs are active than its limit; the tasks started and their runs' ids.

        `statuses` holds the status of every task's run that may still be active (None
        for one not made yet, which counts as active); a run left out has ended."""
        settings = self.board_settings
        if self.deleted or not settings["auto_pickup"]:
            return []
        active = sum(
            1
            for task in self.tasks.values()
            if task["run_id"] in statuses
            and (statuses[task["run_id"]] is None or statuses[task["run_id"]] in ACTIVE_RUN)
        )
        room = settings["max_concurrent_runs"] - active
        waiting = [t for t in self.columns[READY] if self.tasks[t]["run_id"] is None]
        return [
            (task_id, self.start_task(task_id=task_id, run_status=None, actor=actor, now=now))
            for task_id in waiting[: max(room, 0)]
        ]
