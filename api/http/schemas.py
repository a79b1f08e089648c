"""Request bodies: strict pydantic models (unknown fields and wrong types are a 400)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

MAX_INT = 2**63 - 1  # what both stores (and orjson) hold
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=20_000)]


class Body(BaseModel):
    """Base: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class NoBody(Body):
    """A command that takes no fields: an empty body or `{}`."""


Branch = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s\x00-\x1f\x7f~^:?*\[\\]+$"),
]
TreeHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{4,64}$")]
SubtaskKey = Annotated[str, StringConstraints(max_length=200)]  # its syntax: domain/plans.py
SubtaskKeys = Annotated[list[SubtaskKey], Field(max_length=200)]


class Subtask(Body):
    key: SubtaskKey
    title: Name
    task: Annotated[str, StringConstraints(min_length=1, max_length=100_000)] | None = None
    scope: Text | None = None
    agent: Name | None = None
    model: Name | None = None
    depends_on: SubtaskKeys = Field(default_factory=list)


class Plan(Body):
    # 1..200 subtasks, checked with the rest of the plan's rules (domain/plans.py), so the
    # answer names what is wrong; this bound only stops a huge body early.
    subtasks: Annotated[list[Subtask], Field(max_length=1000)]
    auto_approve_children: bool = True


class WorkPlan(Plan):
    fencing_token: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None


class SubmitProjectRun(Body):
    task: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
    originating_branch: Branch | None = None
    parent_run_id: UUID | None = None
    agent: Name | None = None
    model: Name | None = None
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 1
    auto_approve_tools: bool = False
    work_plan: Plan | None = None  # submitted as a coordinator, never claimable itself

    @field_validator("task")
    @classmethod
    def _task_not_blank(cls, task: str) -> str:
        if not task.strip():
            raise ValueError("task must not be blank")
        return task


class SubmitRun(SubmitProjectRun):
    project_id: UUID | None = None


class CreateProject(Body):
    name: Name
    repository_path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    default_branch: Branch = "main"


class UpdateProject(Body):
    free_form: ClassVar[bool] = True  # settings are any JSON object

    name: Name | None = None
    default_branch: Branch | None = None
    settings: dict[str, Any] | None = None


class CancelRun(Body):
    reason: Text | None = None


class Review(Body):
    approved: bool
    request_changes: bool = False
    comment: Text | None = None
    subtasks: SubtaskKeys | None = None  # a coordinator's subtasks to redo

    @field_validator("request_changes")
    @classmethod
    def _one_decision(cls, request_changes: bool, info: ValidationInfo) -> bool:
        if request_changes and info.data.get("approved"):
            raise ValueError("approved and request_changes cannot both be true")
        return request_changes


class Claim(Body):
    runner_id: Name
    wait_seconds: Annotated[float, Field(ge=0, le=30)] = 0


class RunnerEvent(Body):
    type: Name
    data: dict[str, Any] = Field(default_factory=dict)


class RunnerEvents(Body):
    free_form: ClassVar[bool] = True  # runner data is any JSON object

    fencing_token: Annotated[int, Field(ge=1, le=MAX_INT)]
    events: Annotated[list[RunnerEvent], Field(min_length=1, max_length=500)]


class DiffStats(Body):
    files: Annotated[int, Field(ge=0, le=MAX_INT)]
    added: Annotated[int, Field(ge=0, le=MAX_INT)]
    removed: Annotated[int, Field(ge=0, le=MAX_INT)]


class Failure(Body):
    category: Literal["network", "flaky-test", "runner-transient", "agent", "other"]
    message: Text


class Report(Body):
    fencing_token: Annotated[int, Field(ge=1, le=MAX_INT)]
    outcome: Literal["changes", "no_changes", "failed"]
    tree_hash: TreeHash | None = None
    diff_stats: DiffStats | None = None
    branch: Branch | None = None
    failure: Failure | None = None


class ResolveGate(Body):
    decision: Literal["approve", "deny", "answer"]
    answer: Text | None = None
    scope: Literal["once", "run"] = "once"


class AutoApprove(Body):
    enabled: bool


class Steer(Body):
    kind: Literal["stop", "redirect", "amend"]
    instruction: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    target_child_run_id: UUID | None = None

    @field_validator("instruction")
    @classmethod
    def _instruction_not_blank(cls, instruction: str) -> str:
        if not instruction.strip():
            raise ValueError("instruction must not be blank")
        return instruction


TaskTitle = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class CreateTask(Body):
    title: TaskTitle
    description: Text = ""


class EditTask(Body):
    title: TaskTitle | None = None
    description: Text | None = None


class BoardSettings(Body):
    auto_pickup: bool
    max_concurrent_runs: Annotated[int, Field(ge=1, le=50)] | None = None


class ReorderTask(Body):
    before_task_id: UUID | None = None
    after_task_id: UUID | None = None


class SessionStart(Body):
    """POST /api/session: a user key, exchanged for a session cookie."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=500)]
