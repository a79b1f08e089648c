"""Answers of the runner routes (api/http/runners.py), the work plan routes (plans.py), the
gate and steering routes (gates.py) and the diff routes (files.py)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from api.http.models.common import Answer, CommandAnswer, Timestamp

SubtaskStatus = Literal["waiting", "dispatched", "completed", "failed", "blocked", "cancelled"]
CoordinatorStatus = Literal[
    "planned", "dispatching", "awaiting_assembly", "complete", "failed", "cancelled"
]

# -- runners ----------------------------------------------------------------------------------


class RunnerDirective(Answer):
    """A redirect or amendment the runner has yet to apply (then `steering.applied`)."""

    directive_id: str
    kind: Literal["redirect", "amend"]
    instruction: str


class GateResolution(Answer):
    """A gate's resolution the runner has yet to acknowledge (then `gate.acknowledged`)."""

    gate_id: str
    decision: Literal["approve", "deny", "answer"]
    answer: str | None
    scope: Literal["once", "run"]


class Assignment(Answer):
    """The work a claim gives a runner, and where the claim's `run.claimed` is."""

    run_id: UUID
    task: str
    attempt: int = Field(ge=1)
    revision: int = Field(ge=0)
    comment: str | None = Field(description="the reviewer's comment when changes were requested")
    repository_path: str | None
    originating_branch: str | None
    agent: str | None
    model: str | None
    max_attempts: int = Field(ge=1)
    auto_approve_tools: bool
    directives: list[RunnerDirective]
    sequence: int = Field(ge=1, description="run.claimed's sequence in the run")
    position: int = Field(ge=1, description="run.claimed's position in the global log")


class Claimed(Answer):
    """A run claimed under a fresh lease: only its fencing token may report on it."""

    lease_id: UUID
    fencing_token: int = Field(ge=1)
    lease_expires_at: Timestamp
    run: Assignment


class Heartbeat(Answer):
    """The renewed lease, and what its runner has yet to act on."""

    lease_id: UUID
    lease_expires_at: Timestamp
    sequence: int = Field(ge=1, description="lease.renewed's sequence in the run")
    position: int = Field(ge=1)
    gates: list[GateResolution]
    directives: list[RunnerDirective]


class OutputAppended(Answer):
    """Where the batch's last event is: its sequence in the run, its global position."""

    sequence: int = Field(ge=1)
    position: int = Field(ge=1)


class RunnerLease(Answer):
    """A lease held on one of your runs."""

    runner: str = Field(description="the runner key's name")
    runner_id: str = Field(description="the runner instance, as its claim named it")
    run_id: UUID
    lease_id: UUID
    claimed_at: Timestamp
    last_heartbeat_at: Timestamp | None
    lease_expires_at: Timestamp


class RunnerLeases(Answer):
    """The leases held on your runs, oldest claim first."""

    items: list[RunnerLease]


# -- work plans -------------------------------------------------------------------------------


class PlanSubtask(Answer):
    """A subtask of a work plan, and its current child run."""

    key: str
    title: str
    task: str
    scope: str | None
    agent: str | None
    model: str | None
    depends_on: list[str]
    status: SubtaskStatus
    child_run_id: UUID | None
    attempts: int = Field(ge=0)
    round: int = Field(ge=1)


class CoordinatorPlan(Answer):
    """A coordinator's work plan."""

    run_id: UUID
    status: CoordinatorStatus
    run_status: str = Field(description="the coordinator run's own status")
    integration_branch: str | None
    auto_approve_children: bool
    subtasks: list[PlanSubtask]
    updated_at: Timestamp


class PlanSet(CoordinatorPlan):
    """The plan as set, and where its `plan.set` is (sequence, position)."""

    sequence: int = Field(ge=1)
    position: int = Field(ge=1)


class PlanChild(Answer):
    """A dispatched subtask's current child run."""

    subtask_key: str
    child_run_id: UUID
    subtask_status: SubtaskStatus
    child_status: str | None = Field(description="null while the runs view lacks the child")
    branch: str | None
    tree_hash: str | None
    step_count: int = Field(ge=0)


class PlanChildren(Answer):
    """A coordinator's children beside their subtasks."""

    run_id: UUID
    items: list[PlanChild]


class GraphNode(Answer):
    """A node: a subtask, the assembly review, or a status of a plain run's lifecycle."""

    id: str
    label: str
    kind: Literal["subtask", "review", "status"]
    status: str = Field(
        description="a subtask's status; the plan's status (assembly); current, done or "
        "upcoming (a plain run's lifecycle)"
    )
    child_run_id: UUID | None = Field(None, description="subtask nodes only")


class GraphEdge(Answer):
    """An edge from one node to another; loopback for a way back."""

    from_: str = Field(alias="from")
    to: str
    loopback: bool


class RunGraph(Answer):
    """A graph to draw: a coordinator's subtasks, or a plain run's lifecycle."""

    variant: Literal["coordinator", "run"]
    nodes: list[GraphNode]
    edges: list[GraphEdge]


# -- gates and steering -----------------------------------------------------------------------


class GateResolved(CommandAnswer):
    """The gate resolved: the run after the command, and the decision."""

    gate_id: str
    decision: Literal["approve", "deny", "answer"]


class AutoApproveSet(CommandAnswer):
    """The run's auto_approve_tools as it now is."""

    auto_approve_tools: bool


class DirectiveSent(Answer):
    """The directive recorded, its targets, and where the run it was sent to records it."""

    run_id: UUID
    directive_id: UUID
    kind: Literal["stop", "redirect", "amend"]
    targets: list[UUID]
    status: Literal["pending"] = Field(description="always pending (the contract's word)")
    sequence: int
    position: int


# -- diffs ------------------------------------------------------------------------------------


class ChangedFile(Answer):
    """A file the run's branch changed, with its line counts (0 for a binary file)."""

    path: str
    status: Literal["added", "modified", "deleted", "renamed"]
    added: int = Field(ge=0)
    removed: int = Field(ge=0)


class ChangedFiles(Answer):
    """The run's branch and the files it changed."""

    branch: str
    files: list[ChangedFile]
