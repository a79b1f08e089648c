"""The engine's project commands, and submitting a run in a project.

Mixed into the Engine (api/service/engine.py), which loads, decides and saves.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from api.service.engine_parts import EngineParts
from api.service.results import Appended
from domain.errors import Conflict, NotFound
from domain.projects import Project

# Immutable values: a copy may share them.
_PLAIN = frozenset({str, int, float, bool, type(None), UUID, datetime})


def _copy_task(task: dict[str, Any]) -> dict[str, Any]:
    """A task's fields, copied (deeply only when one is not a plain value)."""
    for value in task.values():
        if value.__class__ not in _PLAIN:
            return deepcopy(task)
    return task.copy()


def copy_project(project: Project) -> Project:
    """A copy of the project that a command may change without touching the original: what
    deepcopy gives, in a fraction of its time for a board of many tasks (its tasks and
    columns are copied as the plain dicts and lists of strings they are)."""
    clone = object.__new__(type(project))
    for name, value in vars(project).items():
        if name == "tasks":
            value = {task_id: _copy_task(task) for task_id, task in value.items()}
        elif name == "columns":
            value = {column: list(task_ids) for column, task_ids in value.items()}
        elif value.__class__ not in _PLAIN:
            value = deepcopy(value)
        clone.__dict__[name] = value
    return clone


class ProjectCommands(EngineParts):
    """One method per command on a project."""

    if TYPE_CHECKING:  # given by the run commands (run_commands.py)

        def submit_run(self, owner: str, task: str, **options: Any) -> Appended: ...

        def cancel_run(self, run_id: UUID, user: str, reason: str | None = None) -> Appended: ...

    def get_project(
        self, project_id: UUID, user: str | None = None, version: int | None = None
    ) -> Project:
        """The project (as it stood after `version`); NotFound unless it exists for `user`."""
        try:
            # The cached project as it stands, not copied yet: a command's answer asks for
            # the version it just saved, which this almost always is, and a deep copy of a
            # board of 1,000 tasks costs more than the command (and a replay much more).
            project: object = self.repository.get(project_id, deepcopy_from_cache=False)
            if isinstance(project, Project) and version not in (None, project.version):
                project = self.repository.get(project_id, version=version)
            elif isinstance(project, Project):
                project = copy_project(project)
        except AggregateNotFoundError:
            raise NotFound("No such project.") from None
        if not isinstance(project, Project):
            raise NotFound("No such project.")
        if user is not None:
            project.check_visible_to(user)
        return project

    def create_project(
        self, owner: str, name: str, repository_path: str | None, default_branch: str
    ) -> tuple[Project, Appended]:
        """Create a project."""
        project = Project.create(
            project_id=self.new_id(),
            owner=owner,
            name=name,
            repository_path=repository_path,
            default_branch=default_branch,
            now=self.clock(),
        )
        return project, self._save(project)

    def update_project(
        self, project_id: UUID, user: str, changes: dict[str, Any]
    ) -> tuple[Project, Appended]:
        """Rename a project, change its default branch or settings."""
        return self._update_project(
            project_id, user, lambda p, now: p.update(changes=changes, actor=user, now=now)
        )

    def delete_project(self, project_id: UUID, user: str) -> int | None:
        """Delete a project; returns the deletion's position (its runs are cancelled after)."""
        _, appended = self._update_project(
            project_id, user, lambda p, now: p.delete(actor=user, now=now)
        )
        return appended.position

    def _update_project(
        self, project_id: UUID, user: str | None, decide: Callable[[Project, datetime], None]
    ) -> tuple[Project, Appended]:
        """Load, decide, save a project (always read from the store); `user` None for the
        engine's own commands, which see every project."""
        too_fast = Conflict("The project is changing too fast; try again.", "active")
        load = partial(self.get_project, project_id, user)
        return self._load_decide_save(
            project_id, user, lambda: None, load, decide, lambda: too_fast
        )

    def submit_project_run(
        self, project_id: UUID, owner: str, task: str, **options: Any
    ) -> Appended:
        """Submit a run in a project: its repository, and its default branch unless given.

        A project deleted while the run was being saved gets the run cancelled at once
        (and NotFound): its deletion only cancels the runs it can already see.
        """
        project = self.get_project(project_id, owner)
        options.setdefault("originating_branch", None)
        options["originating_branch"] = options["originating_branch"] or project.default_branch
        appended = self.submit_run(
            owner,
            task,
            project_id=str(project.id),
            repository_path=project.repository_path,
            **options,
        )
        try:
            self.get_project(project_id, owner)
        except NotFound:
            self.cancel_run(appended.run_id, owner, reason="project deleted")
            raise
        return appended
