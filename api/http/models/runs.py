"""Answers of the run routes (api/http/runs.py) and the event routes (api/http/events.py)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from api.http.models.common import Answer, CommandAnswer, ProjectEvent, RunEvent, Timestamp


class RunFailure(Answer):
    category: str
    message: str


class RunReview(Answer):
    decision: str
    reviewer: str
    comment: str | None
    at: Timestamp


class OpenGate(Answer):
    model_config = {"extra": "allow"}  # the gate's own fields, as the runner opened it
    gate_id: str
    kind: str
    prompt: str | None = None
    opened_at: Timestamp


class RunDiffStats(Answer):
    files: int
    added: int
    removed: int


class TokenUsage(Answer):
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    by_model: dict[str, dict[str, int]]


class Run(Answer):
    """A run (the runs read model; with ?at_sequence=N, the run as it stood after event N)."""

    run_id: UUID
    project_id: UUID | None
    parent_run_id: UUID | None
    retried_from: UUID | None
    owner: str
    task: str
    agent: str | None
    model: str | None
    repository_path: str | None
    originating_branch: str | None
    auto_approve_tools: bool
    status: str
    result: str | None
    failure: RunFailure | None
    attempt: int
    max_attempts: int
    revision: int
    comment: str | None
    created_at: Timestamp | None
    started_at: Timestamp | None
    ended_at: Timestamp | None
    updated_at: Timestamp | None
    last_sequence: int
    step_count: int
    open_gates: list[OpenGate]
    review: RunReview | None
    tree_hash: str | None
    diff_stats: RunDiffStats | None
    branch: str | None
    merge_result: dict[str, Any] | None
    conflicting_files: list[str] | None
    coordinator_status: str | None
    subtask_key: str | None
    task_id: UUID | None
    directives: list[dict[str, Any]]
    not_before: float | str | None
    archived_at: Timestamp | None
    usage: TokenUsage


class RunPage(Answer):
    """A page of runs, newest first; next_cursor fetches the next page (null at the end)."""

    items: list[Run]
    next_cursor: str | None


class Retried(CommandAnswer):
    """The new run that retries a failed one."""

    retried_from: UUID


class RunEvents(Answer):
    """A page of a run's events after a sequence, and the run's last sequence."""

    events: list[RunEvent]
    last_sequence: int


class GlobalEvents(Answer):
    """A page of the caller's events in global order; last_position resumes after it."""

    events: list[RunEvent | ProjectEvent]
    last_position: int = Field(ge=0)
