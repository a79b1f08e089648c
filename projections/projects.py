"""The projects read model: one row per live project."""

from __future__ import annotations

from typing import Any

from adapters import readmodels
from adapters.db import Cursor, StoredRow
from domain.projects import Project
from domain.timestamps import format_timestamp
from domain.topics import PROJECT_TOPICS
from projections.folding import Folder, Loader


def project_view(project: Project) -> dict[str, Any]:
    """The project as the API shows it."""
    return {
        "project_id": str(project.id),
        "owner": project.owner,
        "name": project.name,
        "repository_path": project.repository_path,
        "default_branch": project.default_branch,
        "settings": project.settings,
        "created_at": format_timestamp(project.created_at),
        "updated_at": format_timestamp(project.modified_on),
        "last_sequence": project.version,
    }


class ProjectsProjection:
    """Applies project events to the projects view."""

    name = "projects"
    tables: tuple[str, ...] = ("projects_view",)

    def __init__(self, engine: Loader) -> None:
        self.folder = Folder(engine)

    def forget(self) -> None:
        """Drop the in-memory projects."""
        self.folder.forget()

    def reset(self, cur: Cursor) -> None:
        """Empty the view and rewind, for a rebuild."""
        readmodels.reset(cur, "projects_view", self.name)

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None:
        """Apply a batch of events in position order."""
        for row in rows:
            if row.topic not in PROJECT_TOPICS:
                continue
            project = self.folder.advance(row)
            if project.deleted:
                readmodels.delete_project(cur, str(project.id))
            else:
                readmodels.upsert_project(cur, project_view(project), row.position)
