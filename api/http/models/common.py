"""Models several groups of routes share: the error body, a run command's answer, the
event envelope."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    """Base of every response model: exactly these fields (the tests validate real answers
    against the document, so a field added to an answer must be added here)."""

    model_config = ConfigDict(extra="forbid")


Timestamp = str  # RFC 3339, UTC, microseconds: 2026-11-23T12:00:00.123456Z


class FieldError(Answer):
    """One field at fault."""

    field: str | None
    message: str


class ErrorBody(Answer):
    """Every error: a code and one human sentence (API.md, "Errors")."""

    model_config = ConfigDict(extra="allow")  # e.g. `status` on a 409 conflict
    error: str = Field(examples=["invalid_request", "not_found", "conflict"])
    detail: str | None = None
    errors: list[FieldError] | None = Field(None, description="on invalid_request")
    status: str | None = Field(None, description="on conflict: the current status")


class CommandAnswer(Answer):
    """A run command's answer: the run, its status, and where the command's last event is
    (its sequence in the run, its position in the global log, for min_position)."""

    run_id: UUID
    status: str
    sequence: int
    position: int


class _Envelope(Answer):
    position: int = Field(ge=1)
    type: str
    at: Timestamp
    actor: str
    data: dict[str, Any]
    prev_hash: str | None
    hash: str | None


class RunEvent(_Envelope):
    """An event of a run, as every read and stream gives it (API.md, "Event envelope")."""

    run_id: UUID
    sequence: int = Field(ge=1)


class ProjectEvent(_Envelope):
    """An event of a project (its board, its settings): no sequence of a run."""

    project_id: UUID
