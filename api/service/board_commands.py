"""The engine's board commands: a project's tasks, on the Project's own stream.

Mixed into the Engine (api/service/engine.py). A task's run decides what the task may do,
so each command reads the status of the task's last run before deciding (a run is
another stream: its status is read, not guarded by the project's version).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from api.service.engine_parts import EngineParts
from api.service.results import Appended
from domain.board import PICKUP_ACTOR, run_task
from domain.errors import NotFound
from domain.projects import Project
from domain.runs import Run


class BoardEngineCommands(EngineParts):
    """One method per board command; each answers the project and what was appended."""

    if TYPE_CHECKING:  # given by the project commands (project_commands.py)

        def _update_project(
            self, project_id: UUID, user: str | None, decide: Callable[[Project, datetime], None]
        ) -> tuple[Project, Appended]: ...

    def task_run_status(self, project: Project, task_id: str) -> str | None:
        """The status of the task's last run; None when it has none (or it is not made)."""
        run_id = project.task(task_id)["run_id"]
        return None if run_id is None else self._run_status(UUID(run_id))

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
        return self._make_task_run(project, task_id, started[0])

    def _make_task_run(self, project: Project, task_id: str, run_id: UUID) -> Appended:
        """Submit the run a task's start recorded, under its recorded id; a run made
        already (by a repeat of the start, or the policy finishing it) is answered as is.
        (A retry's run is made by retry_task_run with the failed run's options; finished
        here after a crash, it keeps its `retried_from` and takes the defaults.)"""
        task = project.task(task_id)
        run = Run.submit(
            retried_from=task.get("retried_from"),
            run_id=run_id,
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
        except IntegrityError:  # made already
            made = self.get_run(run_id)
            return Appended(made.id, made.status, made.version, None)

    def ready_all(self, project_id: UUID, user: str) -> tuple[Project, Appended, list[str]]:
        """Move every backlog task to `ready`, in their order (and which ones moved)."""
        moved: list[str] = []

        def decide(project: Project, now: datetime) -> None:
            moved[:] = project.ready_all(actor=user, now=now)

        project, appended = self._update_project(project_id, user, decide)
        return project, appended, moved

    def change_board_settings(
        self, project_id: UUID, user: str, auto_pickup: bool, max_concurrent_runs: int | None
    ) -> tuple[Project, Appended]:
        """Turn a board's auto-pickup on or off, and set its limit (kept when not given)."""
        return self._update_project(
            project_id,
            user,
            lambda p, now: p.change_settings(
                auto_pickup=auto_pickup,
                max_concurrent_runs=max_concurrent_runs
                if max_concurrent_runs is not None
                else p.board_settings["max_concurrent_runs"],
                actor=user,
                now=now,
            ),
        )

    def pick_up_tasks(self, project_id: UUID, ended: Collection[str] = ()) -> list[UUID]:
        """Start what the board's auto-pickup allows now (Project.pick_up), and make the
        runs of earlier starts that were recorded but not made (a crash between the two);
        the ids of the runs made, in the order they were made: earlier starts first, then
        the board's order. `ended` names runs known to have ended (from the read model:
        an ended run never becomes active again); every other task's run is read afresh.

        Exactly once: a start is recorded on the project, guarded by its version, before
        its run is made under the id the start derived; repeating this (a crash, two
        processes) finds the task started and its run made, and starts nothing twice."""
        unmade: list[tuple[str, UUID]] = []
        started: list[tuple[str, UUID]] = []

        def decide(project: Project, now: datetime) -> None:
            statuses = {
                run_id: self._run_status(UUID(run_id))
                for task in project.tasks.values()
                if (run_id := task["run_id"]) is not None and run_id not in ended
            }
            unmade[:] = project.unmade_runs(statuses)
            started[:] = project.pick_up(statuses=statuses, actor=PICKUP_ACTOR, now=now)

        project, _ = self._update_project(project_id, None, decide)
        made = []
        for task_id, run_id in [*unmade, *started]:
            self._make_task_run(project, task_id, run_id)
            made.append(run_id)
        return made

    def _run_status(self, run_id: UUID) -> str | None:
        """A run's status as stored now; None when it is not made."""
        try:
            return self.get_run(run_id).status
        except NotFound:
            return None

    def retry_task_run(self, source: Run, user: str, options: dict[str, Any]) -> Appended | None:
        """Retry the failed current run of a board task as the task's next start: recorded
        on the project first (the new run's derived id, `retried_from`), then the run is
        made with the task's id and the source's `options`; a repeat finds it made, as a
        repeated start does. None when the run is no longer its task's current run (the
        task was moved, deleted or started again): the caller retries it as a plain run."""
        task_id, project_id = source.task_id, source.project_id
        if task_id is None or project_id is None:
            return None
        retried: list[UUID | None] = []

        def decide(project: Project, now: datetime) -> None:
            retried.clear()
            status = self.task_run_status(project, task_id) if task_id in project.tasks else None
            retried.append(
                project.retry_task_run(
                    task_id=task_id,
                    failed_run_id=str(source.id),
                    run_status=status,
                    actor=user,
                    now=now,
                )
            )

        project, _ = self._update_project(UUID(project_id), user, decide)
        run_id = retried[0]
        if run_id is None:
            return None
        run = Run.submit(
            run_id=run_id,
            owner=project.owner,
            task=source.task,
            now=self.clock(),
            project_id=str(project.id),
            repository_path=project.repository_path,
            task_id=task_id,
            **options,
        )
        try:
            return self._save(run)
        except IntegrityError:  # made already, by a repeat of this retry
            made = self.get_run(run_id)
            return Appended(made.id, made.status, made.version, None)
