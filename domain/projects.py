"""The Project aggregate: a named git repository and its default branch, owned by one user."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain import board_pickup, project_board
from domain.board import COLUMNS, DEFAULT_SETTINGS
from domain.board_pickup import PickupCommands
from domain.errors import Invalid, NotFound
from domain.project_board import BoardCommands, ProjectEvent


class ProjectState:
    """What a project's events build up: declared for the reader and the type checker, set
    only by the events' apply (annotations on Project itself would make the library turn
    the aggregate into a dataclass)."""

    owner: str
    name: str
    repository_path: str | None
    default_branch: str
    settings: dict[str, Any]
    created_at: datetime
    deleted: bool
    tasks: dict[str, dict[str, Any]]  # task id → title, description, column, run_id, starts
    columns: dict[str, list[str]]  # column → its task ids, top first
    board_settings: dict[str, Any]  # auto_pickup, max_concurrent_runs


class Project(BoardCommands, PickupCommands, ProjectState, Aggregate):
    """A project: where runs get their repository and the branch they merge into, and its
    board of tasks (domain/project_board.py)."""

    TOPIC = "runledger:Project"

    Event = ProjectEvent
    TaskCreated = project_board.TaskCreated
    TaskEdited = project_board.TaskEdited
    TaskMoved = project_board.TaskMoved
    TaskReordered = project_board.TaskReordered
    TaskDeleted = project_board.TaskDeleted
    TaskStarted = project_board.TaskStarted
    SettingsChanged = board_pickup.SettingsChanged

    class Created(ProjectEvent, Aggregate.Created):
        TYPE = "project.created"
        owner: str
        name: str
        repository_path: str | None
        default_branch: str

        def apply(self, project: Project) -> None:
            project.owner = self.owner
            project.name = self.name
            project.repository_path = self.repository_path
            project.default_branch = self.default_branch
            project.settings = {}
            project.created_at = self.timestamp
            project.deleted = False
            project.tasks = {}
            project.columns = {column: [] for column in COLUMNS}
            project.board_settings = dict(DEFAULT_SETTINGS)

    class Updated(ProjectEvent):
        TYPE = "project.updated"
        changes: dict[str, Any]

        def apply(self, project: Project) -> None:
            for key, value in self.changes.items():
                setattr(project, key, value)

    class Deleted(ProjectEvent):
        TYPE = "project.deleted"
        WAKES = ("project-cleanup",)

        def apply(self, project: Project) -> None:
            project.deleted = True

    @classmethod
    def create(
        cls,
        *,
        project_id: UUID,
        owner: str,
        name: str,
        repository_path: str | None,
        default_branch: str,
        now: datetime,
    ) -> Project:
        """Create a project (the repository path was checked by the caller)."""
        if not name.strip():
            raise Invalid("The name must not be empty.", "name")
        if not default_branch.strip():
            raise Invalid("The default branch must not be empty.", "default_branch")
        return cls._create(
            cls.Created,
            id=project_id,
            timestamp=now,
            actor=owner,
            owner=owner,
            name=name,
            repository_path=repository_path,
            default_branch=default_branch,
        )

    def check_visible_to(self, user: str) -> None:
        """Raise NotFound unless the project exists for this user."""
        if self.deleted or self.owner != user:
            raise NotFound("No such project.")

    def update(self, *, changes: dict[str, Any], actor: str, now: datetime) -> None:
        """Change the name, default branch or settings; only real changes are recorded."""
        allowed = {"name", "default_branch", "settings"}
        unknown = set(changes) - allowed
        if unknown:
            raise Invalid(f"Cannot change {sorted(unknown)}.", sorted(unknown)[0])
        for key in ("name", "default_branch"):
            if key in changes and not str(changes[key]).strip():
                raise Invalid(f"The {key} must not be empty.", key)
        real = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if real:
            self.trigger_event(self.Updated, timestamp=now, actor=actor, changes=real)

    def delete(self, *, actor: str, now: datetime) -> None:
        """Delete the project (its active runs are cancelled by the engine)."""
        if not self.deleted:
            self.trigger_event(self.Deleted, timestamp=now, actor=actor)
