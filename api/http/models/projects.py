"""Answers of the project routes (api/http/projects.py), the board routes
(api/http/board.py) and the usage routes (api/http/usage.py)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from api.http.models.common import Answer, CommandAnswer, Timestamp

# -- projects ---------------------------------------------------------------------------------


class Project(Answer):
    """A project (the projects read model)."""

    project_id: UUID
    owner: str
    name: str
    repository_path: str | None
    default_branch: str
    settings: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp
    last_sequence: int = Field(ge=1)


class ProjectChanged(Project):
    """The project as the command left it, with its last event's sequence and position."""

    sequence: int = Field(ge=1)
    position: int = Field(ge=1)


class ProjectList(Answer):
    """Your projects, oldest first."""

    items: list[Project]


# -- board ------------------------------------------------------------------------------------

OwnColumn = Literal["backlog", "ready", "archived"]
ShownColumn = Literal["backlog", "ready", "in_progress", "in_review", "done"]


class TaskChanged(Answer):
    """The task as the command left it: its own column and rank there (top = 0), with the
    project's last sequence and the position of its last event."""

    task_id: UUID
    project_id: UUID
    title: str
    description: str
    column: OwnColumn
    rank: int = Field(ge=0)
    run_id: UUID | None
    sequence: int = Field(ge=1)
    position: int = Field(ge=1)


class StartedTask(CommandAnswer):
    """The run started for the task: its status, its sequence and position."""

    task_id: UUID


class ReadyColumn(Answer):
    """The ready column after the move (task ids, top first), with the project's last
    sequence and the position of its last event."""

    project_id: UUID
    ready: list[UUID]
    sequence: int = Field(ge=1)
    position: int = Field(ge=1)


class PickupSettings(Answer):
    auto_pickup: bool
    max_concurrent_runs: int = Field(ge=1, le=50)


class PickupSettingsChanged(PickupSettings):
    """The board's auto-pickup settings as they are now, with the project's last sequence
    and the position of its last event."""

    project_id: UUID
    sequence: int = Field(ge=1)
    position: int = Field(ge=1)


class BoardTaskRun(Answer):
    run_id: UUID
    status: str
    open_gates: int = Field(ge=0)
    last_event_at: Timestamp


class BoardTaskFailure(Answer):
    run_id: UUID
    category: str = Field(description="the run's failure category, merge, declined, cancelled")
    message: str


class BoardTask(Answer):
    task_id: UUID
    title: str
    description: str
    column: ShownColumn = Field(description="the shown column: its run's once started")
    rank: int = Field(ge=0, description="its index in its own column (top = 0)")
    run_id: UUID | None
    run: BoardTaskRun | None = Field(description="its last run, once the read models saw it")
    last_failure: BoardTaskFailure | None


class BoardColumn(Answer):
    name: ShownColumn
    tasks: list[BoardTask]


class Board(Answer):
    """The board: its settings, its five shown columns in order, each in rank order."""

    project_id: UUID
    settings: PickupSettings
    columns: list[BoardColumn] = Field(min_length=5, max_length=5)


# -- usage ------------------------------------------------------------------------------------


class UsageFigure(Answer):
    """Tokens and their cost (null, with no source, when some of them have no price)."""

    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cached_input_tokens: int = Field(ge=0)
    cost_usd: float | None = Field(ge=0)
    cost_source: Literal["agent", "price_table"] | None


class ModelUsage(UsageFigure):
    model: str


class ChildUsage(UsageFigure):
    run_id: UUID


class DayUsage(UsageFigure):
    day: date


class RunUsage(Answer):
    """A run's token usage and cost by model; a coordinator's includes its children's."""

    run_id: UUID
    total: UsageFigure
    models: list[ModelUsage]
    children: list[ChildUsage] = Field(
        default_factory=list, description="a coordinator's children's totals (coordinators only)"
    )


class ProjectUsage(Answer):
    """A project's token usage and cost between two UTC days: total, by model, per day."""

    project_id: UUID
    since: date | None
    until: date | None
    total: UsageFigure
    models: list[ModelUsage]
    days: list[DayUsage]
