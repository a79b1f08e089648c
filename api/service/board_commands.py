"""The engine's board commands: a project's tasks, on the Project's own stream.

Mixed into the Engine (api/service/engine.py). A task's run decides what the task may do,
so each command reads the status of the task's last run before deciding (a run is
another stream: its status is read, not guarded by the project's version).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from api.service.engine_parts import EngineParts
from api.service.results import Appended
from domain.board import run_task
from domain.errors import NotFound
from domain.projects import Project
from domain.runs import Run


class BoardEngineCommands(EngineParts):
    """One method per board command; each answers the project and what was appended."""

    if TYPE_CHECKING:  # given by the project commands (project_commands.py)

        def _update_project(
            self, project_id: UUID, user: str, decide: Callable[[Project, datetime], None]
        ) -> tuple[Project, Appended]: ...

    def task_run_status(self, project: Project, task_id: str) -> str | None:
        """The status of the task's last run; None when it has none (or it is not made)."""
        run_id = project.task(task_id)["run_id"]
        if run_id is None:
            return None
        try:
            return self.get_run(UUID(run_id)).status
        except NotFound:
            return None

    def going_status(self, project: Project, task_id: str) -> str | None:
        """The task's run status for the checks that its run is not going: a start recorded
        whose run is not made yet counts as pending (that run is about to be made, and a
        task moved or deleted away from it would leave it going, and let a second start)."""
        status = self.task_run_status(project, task_id)
        if status is None and project.task(task_id)["run_id"] is not None:
            return "pending"
        return status

    def create_task(
        self, project_id: UUID, user: str, title: str, description: str
    ) -> tuple[Project, Appended]:
        """Add a task at the bottom of the project's backlog (its id is the engine's)."""
        task_id = str(self.new_id())
        return self._update_project(
            project_id,
            user,
            lambda p, now: p.create_task(
                task_id=task_id, title=title, description=description, actor=user, now=now
            ),
        )

    def edit_task(
        self, project_id: UUID, user: str, task_id: str, changes: dict[str, Any]
    ) -> tuple[Project, Appended]:
        """Change a task's title and/or description."""
        return self._update_project(
            project_id,
            user,
            lambda p, now: p.edit_task(
                task_id=task_id,
                title=changes.get("title"),
                description=changes.get("description"),
                actor=user,
                now=now,
            ),
        )

    def move_task(
        self, project_id: UUID, user: str, task_id: str, column: str
    ) -> tuple[Project, Appended]:
        """Move a task to the bottom of another column."""
        return self._update_project(
            project_id,
            user,
            lambda p, now: p.move_task(
                task_id=task_id,
                column=column,
                run_status=self.going_status(p, task_id),
                actor=user,
                now=now,
            ),
        )

    def reorder_task(
        self, project_id: UUID, user: str, task_id: str, before: str | None, after: str | None
    ) -> tuple[Project, Appended]:
        """Place a task right before or after another task of its column."""
        return self._update_project(
            project_id,
            user,
            lambda p, now: p.reorder_task(
                task_id=task_id, before_task_id=before, after_task_id=after, actor=user, now=now
            ),
        )

    def delete_task(self, project_id: UUID, user: str, task_id: str) -> tuple[Project, Appended]:
        """Remove a task whose run (if any) is not going."""
        return self._update_project(
            project_id,
            user,
            lambda p, now: p.delete_task(
                task_id=task_id,
                run_status=self.going_status(p, task_id),
                actor=user,
                now=now,
            ),
        )

    def start_task(self, project_id: UUID, user: str, task_id: str) -> Appended:
        """Start a run for a ready task: the start is recorded on the project first (with
        the run's derived id), then the run is made under that id. A start recorded whose
        run is not made (a crash between the two) is finished, not recorded again."""
        started: list[UUID] = []

        def decide(project: Project, now: datetime) -> None:
            started.clear()
            recorded = project.task(task_id)["run_id"]
            status = self.task_run_status(project, task_id)
            if recorded is not None and status is None:
                started.append(UUID(recorded))
                return
            started.append(
                project.start_task(task_id=task_id, run_status=status, actor=user, now=now)
            )

        project, _ = self._update_project(project_id, user, decide)
        task = project.task(task_id)
        run = Run.submit(
            run_id=started[0],
            owner=project.owner,
            task=run_task(task["title"], task["description"]),
            now=self.clock(),
            project_id=str(project.id),
            repository_path=project.repository_path,
            originating_branch=project.default_branch,
            task_id=task_id,
        )
        try:
            return self._save(run)
        except IntegrityError:  # made already, by a repeat of this start
            made = self.get_run(started[0])
            return Appended(made.id, made.status, made.version, None)
