"""A board's auto-pickup: its settings, and the rule by which the engine starts ready
tasks, top first, while fewer of the board's runs are active than its limit.

`PickupCommands` is mixed into `Project` (domain/projects.py) beside the board's commands
(domain/project_board.py), whose `start_task` records each start.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.board import ACTIVE_RUN, READY, check_settings
from domain.project_board import PICKUP, ProjectEvent

if TYPE_CHECKING:
    from domain.projects import Project


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


class PickupCommands:
    """The auto-pickup commands of a project's board."""

    if TYPE_CHECKING:
        deleted: bool
        tasks: dict[str, dict[str, Any]]
        columns: dict[str, list[str]]
        board_settings: dict[str, Any]

        def trigger_event(self, event_class: Any, **kwargs: Any) -> None: ...

        def start_task(
            self, *, task_id: str, run_status: str | None, actor: str, now: datetime
        ) -> UUID: ...

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
