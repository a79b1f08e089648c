"""The board's use cases: a project's tasks, their columns and order, and starting one.

The routes (api/http/board.py) call these; each is one engine command, answered as the
task it left (with the project's sequence and position, for read-your-writes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

import orjson

from adapters import readmodels
from adapters.db import Cursor
from api.service.results import Appended
from domain.board import READY
from domain.projects import Project

if TYPE_CHECKING:
    from api.service.bootstrap import Services


def task_answer(
    services: Services, project: Project, task_id: str, appended: Appended
) -> dict[str, Any]:
    """A task as a command left it: its own fields, its column and rank in it, with the
    project's last sequence and the position of its last event."""
    task = project.task(task_id)
    position = _position(services, project, appended)
    return {
        "task_id": task_id,
        "project_id": str(project.id),
        "title": task["title"],
        "description": task["description"],
        "column": task["column"],
        "rank": project.columns[task["column"]].index(task_id),
        "run_id": task["run_id"],
        "sequence": project.version,
        "position": position,
    }


def created_task(services: Services, appended: Appended) -> dict[str, Any]:
    """The task a creation appended: the last task made as of the project's version then
    (also for a replay after a crash, which only knows what was appended)."""
    project = services.engine.get_project(appended.run_id, version=appended.sequence)
    task_id = list(project.tasks)[-1]
    return task_answer(services, project, task_id, appended)


def changed_task(services: Services, task_id: str, appended: Appended) -> dict[str, Any]:
    """A task as the command that appended `appended` left it."""
    project = services.engine.get_project(appended.run_id, version=appended.sequence)
    return task_answer(services, project, task_id, appended)


def create_task(
    services: Services, project_id: UUID, user: str, title: str, description: str
) -> Appended:
    """Add a task at the bottom of the backlog."""
    return services.engine.create_task(project_id, user, title, description)[1]


def edit_task(
    services: Services, project_id: UUID, user: str, task_id: str, changes: dict[str, Any]
) -> Appended:
    """Change a task's title or description."""
    return services.engine.edit_task(project_id, user, task_id, changes)[1]


def move_task(
    services: Services, project_id: UUID, user: str, task_id: str, column: str
) -> Appended:
    """Move a task to the bottom of another column."""
    return services.engine.move_task(project_id, user, task_id, column)[1]


def reorder_task(
    services: Services,
    project_id: UUID,
    user: str,
    task_id: str,
    before: str | None,
    after: str | None,
) -> Appended:
    """Place a task before or after another task of its column."""
    return services.engine.reorder_task(project_id, user, task_id, before, after)[1]


def delete_task(services: Services, project_id: UUID, user: str, task_id: str) -> int:
    """Remove a task; the position of the project's last event."""
    project, appended = services.engine.delete_task(project_id, user, task_id)
    return _position(services, project, appended) or 0


def start_task(services: Services, project_id: UUID, user: str, task_id: str) -> Appended:
    """Start a run for a ready task (what was appended to the run)."""
    return services.engine.start_task(project_id, user, task_id)


def ready_all(services: Services, project_id: UUID, user: str) -> Appended:
    """Move every backlog task to `ready`."""
    return services.engine.ready_all(project_id, user)[1]


def ready_column(services: Services, appended: Appended) -> dict[str, Any]:
    """The ready column (task ids, top first) as the command that appended `appended` left
    it, with the project's sequence and position."""
    project = services.engine.get_project(appended.run_id, version=appended.sequence)
    return {
        "project_id": str(project.id),
        "ready": list(project.columns[READY]),
        "sequence": project.version,
        "position": _position(services, project, appended),
    }


def change_settings(
    services: Services,
    project_id: UUID,
    user: str,
    auto_pickup: bool,
    max_concurrent_runs: int | None,
) -> dict[str, Any]:
    """Set a board's auto-pickup; the settings as they are then."""
    project, appended = services.engine.change_board_settings(
        project_id, user, auto_pickup, max_concurrent_runs
    )
    return {
        "project_id": str(project.id),
        **project.board_settings,
        "sequence": project.version,
        "position": _position(services, project, appended),
    }


def _position(services: Services, project: Project, appended: Appended) -> int | None:
    """The position of the project's last event (of what was appended, when it was)."""
    if appended.position is not None:
        return appended.position
    return services.db.position_of(project.id, project.version)


class BoardAnswers:
    """GET board's answers, encoded once per change of the board.

    Each project's last answer is kept with the board's stamp (the position of the last
    event that changed what it shows) and the read models' position it was checked at.
    While the read models have not moved, nothing can have changed: the answer is served
    from memory (`cached`). Once they moved, one indexed query for the stamp says whether
    it still holds (`answer`)."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._answers: OrderedDict[str, _Answer] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, project_id: str, owner: str, position: int) -> bytes | None:
        """The answer, if it was checked at exactly this read-model position."""
        known = self._answers.get(project_id)
        if known is not None and known.position == position and known.owner == owner:
            return known.body
        return None

    def answer(self, cur: Cursor, project_id: str, owner: str, position: int) -> bytes | None:
        """The owner's project's board as JSON, the read models being at `position` (or
        past it); None when it is not the owner's."""
        stamp = readmodels.board_stamp(cur, project_id, owner)
        if stamp is None:
            return None
        with self._lock:
            known = self._answers.get(project_id)
        if known is not None and known.stamp == stamp and known.owner == owner:
            body = known.body
        else:
            board = readmodels.get_board_encoded(cur, project_id, owner)
            if board is None:
                return None
            body = orjson.dumps(board)
        with self._lock:
            self._answers[project_id] = _Answer(owner, stamp, position, body)
            self._answers.move_to_end(project_id)
            if len(self._answers) > self._capacity:
                self._answers.popitem(last=False)
        return body


class _Answer(NamedTuple):
    owner: str
    stamp: int
    position: int  # the read models' position it was last checked at
    body: bytes
