"""A coordinator run's events: its work plan, and each subtask's way from waiting to an end.

They are on the coordinator's own stream (so its SSE stream shows its plan unfold) and are
attributes of `Run` like its other events (domain/runs/aggregate.py). The plan's state is
`run.plan`: {auto_approve_children, integration_branch, subtasks: {key: subtask}}, replaced
(never changed in place) by each event, as every other part of a run's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain.plans import (
    BLOCKED,
    CANCELLED,
    COMPLETED,
    DISPATCHING,
    FAILED,
    PLANNED,
    WAITING,
)
from domain.plans import DISPATCHED as SUBTASK_DISPATCHED
from domain.runs.events import Event
from domain.runs.states import IN_PROGRESS

if TYPE_CHECKING:
    from domain.runs.aggregate import Run

COORDINATOR = ("coordinator",)  # the coordination policy's loop acts on these


def set_subtask(run: Run, key: str, **changes: Any) -> None:
    """Replace one subtask of the run's plan with its changed copy."""
    subtasks = run.subtasks
    subtasks[key] = {**subtasks[key], **changes}
    run.plan = {**(run.plan or {}), "subtasks": subtasks}


def give_to_child(run: Run, key: str, child_run_id: str, **changes: Any) -> None:
    """The subtask is dispatched to this child run (one more attempt at it)."""
    attempts = run.subtasks[key]["attempts"] + 1
    set_subtask(
        run,
        key,
        status=SUBTASK_DISPATCHED,
        child_run_id=child_run_id,
        attempts=attempts,
        **changes,
    )
    run.coordinator_status = DISPATCHING


class PlanSet(Event):
    """The run got its work plan (from its owner while pending, or from the runner holding
    its lease, whose lease ends): it is a coordinator from now on, never claimed itself."""

    TYPE = "plan.set"
    WAKES = COORDINATOR
    subtasks: list[dict[str, Any]]
    auto_approve_children: bool
    integration_branch: str | None

    def apply(self, run: Run) -> None:
        run.plan = {
            "auto_approve_children": self.auto_approve_children,
            "integration_branch": self.integration_branch,
            "subtasks": {
                s["key"]: {
                    **s,
                    "status": WAITING,
                    "child_run_id": None,
                    "attempts": 0,
                    "round": 1,
                    "comment": None,
                    "retried_from": None,
                }
                for s in self.subtasks
            },
        }
        run.coordinator_status = PLANNED
        run.status = IN_PROGRESS
        run.lease = None
        if run.started_at is None:
            run.started_at = self.timestamp


class SubtaskDispatched(Event):
    """A child run does the subtask (its id derives from the coordinator, key and round)."""

    KEEPS_LEASE = True  # a coordinator holds no lease
    TYPE = "subtask.dispatched"
    WAKES = COORDINATOR
    key: str
    child_run_id: str
    round: int

    def apply(self, run: Run) -> None:
        give_to_child(run, self.key, self.child_run_id, round=self.round)


class SubtaskCompleted(Event):
    """The subtask's child run merged (or completed without changes)."""

    KEEPS_LEASE = True  # a coordinator holds no lease
    TYPE = "subtask.completed"
    WAKES = COORDINATOR
    key: str
    child_run_id: str

    def apply(self, run: Run) -> None:
        set_subtask(run, self.key, status=COMPLETED)


class SubtaskFailed(Event):
    """The subtask's child run ended without its work (failed, declined, merge failed,
    cancelled)."""

    KEEPS_LEASE = True  # a coordinator holds no lease
    TYPE = "subtask.failed"
    key: str
    child_run_id: str
    child_status: str

    def apply(self, run: Run) -> None:
        set_subtask(run, self.key, status=FAILED)


class SubtaskBlocked(Event):
    """The subtask will not be dispatched: a subtask it depends on failed (or the
    coordinator ended)."""

    KEEPS_LEASE = True  # a coordinator holds no lease
    TYPE = "subtask.blocked"
    key: str
    reason: str

    def apply(self, run: Run) -> None:
        set_subtask(run, self.key, status=BLOCKED)


class SubtaskCancelled(Event):
    """The coordinator was cancelled while the subtask's child was active."""

    KEEPS_LEASE = True  # a coordinator holds no lease
    TYPE = "subtask.cancelled"
    key: str
    child_run_id: str | None

    def apply(self, run: Run) -> None:
        set_subtask(run, self.key, status=CANCELLED)


class SubtaskRetried(Event):
    """A failed subtask's child was retried: the new run is the subtask's child. A
    coordinator that had failed for want of it is dispatching again."""

    KEEPS_LEASE = True  # a coordinator holds no lease
    TYPE = "subtask.retried"
    WAKES = COORDINATOR
    key: str
    child_run_id: str
    retried_from: str

    def apply(self, run: Run) -> None:
        give_to_child(run, self.key, self.child_run_id, retried_from=self.retried_from)
        if run.status != IN_PROGRESS:  # the coordinator's failure is undone
            run.status = IN_PROGRESS
            run.ended_at = None
            run.result = None
            run.failure = None


class SubtaskUnblocked(Event):
    """No subtask the subtask depends on has failed any more: it waits again."""

    KEEPS_LEASE = True  # a coordinator holds no lease
    TYPE = "subtask.unblocked"
    WAKES = COORDINATOR
    key: str

    def apply(self, run: Run) -> None:
        set_subtask(run, self.key, status=WAITING)


class SubtaskReopened(Event):
    """The assembly review asked for changes: the subtask is done again, in a new round,
    by a new child run carrying the reviewer's comment."""

    KEEPS_LEASE = True  # a coordinator holds no lease
    TYPE = "subtask.reopened"
    WAKES = COORDINATOR
    key: str
    round: int
    comment: str | None

    def apply(self, run: Run) -> None:
        set_subtask(
            run,
            self.key,
            status=WAITING,
            round=self.round,
            comment=self.comment,
            child_run_id=None,
            retried_from=None,
        )
        run.coordinator_status = DISPATCHING
