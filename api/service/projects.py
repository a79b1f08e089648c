"""Project use cases: repository and branch checks, create, update, delete-then-cleanup."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters import git
from api.service.engine import Appended
from api.service.positions import NotCaughtUp, StoreAway, wait_for_read_models
from api.threads import in_thread
from domain.errors import Invalid
from domain.projects import Project

if TYPE_CHECKING:
    from api.config import Config
    from api.service.bootstrap import Services


def check_repository(config: Config, path: str | None) -> str | None:
    """The resolved repository_path if the operator allows it, else Invalid saying why."""
    if path is None:
        return None
    error = git.repository_error(path, list(config.allowed_roots))
    if error is not None:
        raise Invalid(error, "repository_path")
    return str(Path(path).resolve())  # what was checked is what is stored


def check_branch(name: str | None) -> None:
    """Invalid unless git accepts `name` as a branch name."""
    if name is not None and not git.valid_branch_name(name):
        raise Invalid(f"{name!r} is not a valid git branch name.", "default_branch")


def create_project(
    services: Services, owner: str, name: str, repository_path: str | None, default_branch: str
) -> Appended:
    """Create a project on a repository the operator allows."""
    path = check_repository(services.config, repository_path)
    check_branch(default_branch)
    _, appended = services.engine.create_project(owner, name, path, default_branch)
    return appended


def update_project(
    services: Services, project_id: UUID, owner: str, changes: dict[str, Any]
) -> tuple[Project, Appended]:
    """Change a project's fields (none set to null; a branch git accepts)."""
    if any(value is None for value in changes.values()):
        raise Invalid("Fields cannot be set to null.")
    if "default_branch" in changes:
        check_branch(changes["default_branch"])
    return services.engine.update_project(project_id, owner, changes)


async def delete_project(services: Services, project_id: UUID, owner: str) -> int | None:
    """Delete a project and cancel its active runs; the deletion's position (None if
    nothing was appended)."""
    position = await in_thread(services.engine.delete_project, project_id, owner)
    # Its active runs are cancelled by the project-cleanup policy; do it now, once the read
    # models include the deletion, so the answer comes after them (if they are slow, the
    # policy still does it: the deletion has happened either way).
    if position is not None:
        with suppress(StoreAway, NotCaughtUp):
            await wait_for_read_models(services, position)
            await in_thread(services.runtime.cleanup.tick)
    return position
