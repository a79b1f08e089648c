"""The Run aggregate's events: what happened to a run, each applied to its state.

They are attributes of `Run` too (`Run.Submitted` …; domain/runs/aggregate.py names them
there), which is where the library looks for an aggregate's events and registers their
topics. An event's `apply` only changes state: no checks, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from domain.events import WireNamed
from domain.plans import AWAITING_ASSEMBLY, COMPLETE, DISPATCHING
from domain.plans import CANCELLED as PLAN_CANCELLED
from domain.plans import FAILED as PLAN_FAILED
from domain.runs.gate_rules import OUTPUT_EFFECTS
from domain.runs.states import (
    AWAITING_REVIEW,
    CANCELLED,
    COMPLETED,
    DECLINED,
    FAILED,
    IN_PROGRESS,
    INITIAL_STATE,
    MERGE_FAILED,
    MERGED,
    MERGING,
    PAUSED,
    PENDING,
    review_record,
)

if TYPE_CHECKING:
    from domain.runs.aggregate import Run


# Events that end a run or put it up for review: for a coordinator's child, news to the
# coordination policy (api/service/coordination.py), which moves the coordinator's plan on.
CHILD_NEWS = ("coordinator",)
RUN_ENDS = (*CHILD_NEWS, "board-pickup")  # a board's run ended: room for another


class Event(WireNamed, Aggregate.Event):
    """Every run event names who caused it (the base of all of Run's events)."""

    actor: str


class Submitted(Event, Aggregate.Created):
    """A run was submitted. v2 adds the subtask a coordinator's child run does
    (`subtask_key`) and the comment it starts with (a reviewer's, when it redoes one); v3
    the board task it was started for (`task_id`)."""

    TYPE = "run.submitted"
    MAKES_CLAIMABLE = True
    WAKES = ("project-cleanup",)  # a run may land in a project being deleted
    class_version = 3
    owner: str
    task: str
    project_id: str | None
    parent_run_id: str | None
    retried_from: str | None
    repository_path: str | None
    originating_branch: str | None
    agent: str | None
    model: str | None
    max_attempts: int
    auto_approve_tools: bool
    subtask_key: str | None
    comment: str | None
    task_id: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["subtask_key"] = None
        state["comment"] = None

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["task_id"] = None

    def apply(self, run: Run) -> None:
        run.owner = self.owner
        run.task = self.task
        run.project_id = self.project_id
        run.parent_run_id = self.parent_run_id
        run.retried_from = self.retried_from
        run.repository_path = self.repository_path
        run.originating_branch = self.originating_branch
        run.agent = self.agent
        run.model = self.model
        run.max_attempts = self.max_attempts
        run.auto_approve_tools = self.auto_approve_tools
        run.status = PENDING
        run.created_at = self.timestamp
        for name, value in INITIAL_STATE.items():
            setattr(run, name, value() if callable(value) else value)
        run.subtask_key = self.subtask_key
        run.comment = self.comment
        run.task_id = self.task_id


def set_coordinator_status(run: Run, status: str) -> None:
    """A coordinator's plan status follows some of its run's own events."""
    if run.plan is not None:
        run.coordinator_status = status


class Paused(Event):
    TYPE = "run.paused"
    KEEPS_LEASE = True

    def apply(self, run: Run) -> None:
        run.status = PAUSED


class Resumed(Event):
    TYPE = "run.resumed"
    KEEPS_LEASE = True
    WAKES = ("coordinator",)  # a paused coordinator dispatches again

    def apply(self, run: Run) -> None:
        run.status = IN_PROGRESS


class Cancelled(Event):
    TYPE = "run.cancelled"
    WAKES = RUN_ENDS
    ENDS_RUN = True
    reason: str | None

    def apply(self, run: Run) -> None:
        run.end(CANCELLED, self.timestamp)
        set_coordinator_status(run, PLAN_CANCELLED)


class OutputRecorded(Event):
    """Runner output (agent messages, tool calls, steps, logs): its wire type is `kind`."""

    TOPIC = "runledger:run.output"
    KEEPS_LEASE = True
    kind: str
    data: dict[str, Any]

    def wire_type(self) -> str:
        return self.kind

    def apply(self, run: Run) -> None:
        lease = run.lease
        if lease is not None and not lease.get("confirmed", True):
            run.lease = {**lease, "confirmed": True}  # its runner spoke: the claim reached it
        if self.kind == "step.started":
            run.step_count += 1
        elif self.kind in OUTPUT_EFFECTS:  # gates and steering: domain/runs/gate_rules.py
            OUTPUT_EFFECTS[self.kind](run, self.data, self.timestamp)


class ReviewRequested(Event):
    """The runner reported changes: the run waits for a human review."""

    TYPE = "run.review_requested"
    WAKES = CHILD_NEWS
    tree_hash: str | None
    diff_stats: dict[str, int] | None
    branch: str | None

    def apply(self, run: Run) -> None:
        run.status = AWAITING_REVIEW
        run.result = "changes"
        run.tree_hash = self.tree_hash
        run.diff_stats = self.diff_stats
        run.branch = self.branch
        run.lease = None
        set_coordinator_status(run, AWAITING_ASSEMBLY)


class Completed(Event):
    TYPE = "run.completed"
    WAKES = RUN_ENDS
    ENDS_RUN = True

    def apply(self, run: Run) -> None:
        run.result = "no_changes"
        run.lease = None
        run.end(COMPLETED, self.timestamp)


class Failed(Event):
    TYPE = "run.failed"
    WAKES = RUN_ENDS
    ENDS_RUN = True
    category: str
    message: str

    def apply(self, run: Run) -> None:
        run.result = "failed"
        run.failure = {"category": self.category, "message": self.message}
        run.lease = None
        run.end(FAILED, self.timestamp)
        set_coordinator_status(run, PLAN_FAILED)


class Approved(Event):
    TYPE = "review.approved"
    WAKES = ("merger",)
    comment: str | None

    def apply(self, run: Run) -> None:
        run.status = MERGING
        run.review = review_record("approved", self.actor, self.comment, self.timestamp)
        run.merge_started = None


class Declined(Event):
    TYPE = "review.declined"
    WAKES = RUN_ENDS
    ENDS_RUN = True
    comment: str | None

    def apply(self, run: Run) -> None:
        run.review = review_record("declined", self.actor, self.comment, self.timestamp)
        run.end(DECLINED, self.timestamp)
        set_coordinator_status(run, PLAN_CANCELLED)


class ChangesRequested(Event):
    TYPE = "review.changes_requested"
    MAKES_CLAIMABLE = True
    comment: str | None

    def apply(self, run: Run) -> None:
        run.status = IN_PROGRESS
        run.revision += 1
        run.comment = self.comment
        run.review = review_record("changes_requested", self.actor, self.comment, self.timestamp)
        set_coordinator_status(run, DISPATCHING)


class MergeStarted(Event):
    """The merge commit exists and the target is about to move to it: recorded before
    any ref or checkout changes, so a crash leaves enough to finish or redo the merge."""

    TYPE = "merge.started"
    target: str
    old_commit: str
    tip: str
    merge_commit: str

    def apply(self, run: Run) -> None:
        run.merge_started = {
            "target": self.target,
            "old_commit": self.old_commit,
            "tip": self.tip,
            "merge_commit": self.merge_commit,
        }


class MergeCompleted(Event):
    TYPE = "merge.completed"
    WAKES = RUN_ENDS
    ENDS_RUN = True
    merge_result: str | None

    def apply(self, run: Run) -> None:
        run.merge_result = self.merge_result
        run.end(MERGED, self.timestamp)
        set_coordinator_status(run, COMPLETE)


class RetryScheduled(Event):
    """An attempt failed for a transient reason: back to pending, after a backoff."""

    TYPE = "run.retry_scheduled"
    MAKES_CLAIMABLE = True
    attempt: int
    not_before: str
    category: str
    message: str

    def apply(self, run: Run) -> None:
        run.status = PENDING
        run.attempt = self.attempt
        run.not_before = self.not_before
        run.failure = {"category": self.category, "message": self.message}
        run.lease = None


class MergeFailed(Event):
    TYPE = "merge.failed"
    WAKES = RUN_ENDS
    ENDS_RUN = True
    reason: str
    conflicting_files: list[str]

    def apply(self, run: Run) -> None:
        run.conflicting_files = self.conflicting_files
        run.failure = {"category": "merge", "message": self.reason}
        run.end(MERGE_FAILED, self.timestamp)
        set_coordinator_status(run, PLAN_FAILED)


class MergeRefused(Event):
    """The merge could not start (a dirty checkout): the run goes back to review."""

    TYPE = "merge.refused"
    reason: str

    def apply(self, run: Run) -> None:
        run.status = AWAITING_REVIEW


class Archived(Event):
    TYPE = "run.archived"
    KEEPS_LEASE = True

    def apply(self, run: Run) -> None:
        run.archived_at = self.timestamp


class Deleted(Event):
    TYPE = "run.deleted"

    def apply(self, run: Run) -> None:
        run.deleted = True
