"""The Run aggregate: one agent run, its state machine and its events.

A command method checks, then triggers an event; an event's ``apply`` only changes state.
Ids and times come in from the caller, so replaying the events always gives the same run.
The events live in domain/runs/events.py, the commands of an attempt (claim, output,
outcome, lease) in attempts.py, review and merge in reviews.py; `Run` gathers them. Gates
(gates.py) and steering (steering.py), with their events in gate_events.py, come first in
the bases: they extend the attempt's output, claim and renewal.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import Conflict, Invalid, NotFound
from domain.runs import events, gate_events, lease_events, plan_events
from domain.runs.attempts import AttemptCommands
from domain.runs.coordination import CoordinatorCommands
from domain.runs.gates import GateCommands
from domain.runs.reviews import ReviewCommands
from domain.runs.snapshot import RunSnapshot
from domain.runs.states import (
    IN_PROGRESS,
    MERGING,
    PAUSED,
    PENDING,
    TERMINAL,
    merge_target,
    own_branch,
)
from domain.runs.steering import SteeringCommands


class Run(
    GateCommands, SteeringCommands, AttemptCommands, ReviewCommands, CoordinatorCommands, Aggregate
):
    """An agent run: submitted, claimed by a runner, reported, reviewed, merged."""

    TOPIC = "runledger:Run"

    # The run's events, as attributes of the aggregate: the library finds them (and
    # registers their topics) here, and callers name them `Run.Submitted` ….
    Event = events.Event
    Submitted = events.Submitted
    Created = events.Submitted  # the library's name for the creation event
    Claimed = lease_events.Claimed
    ClaimAbandoned = lease_events.ClaimAbandoned
    Paused = events.Paused
    Resumed = events.Resumed
    Cancelled = events.Cancelled
    OutputRecorded = events.OutputRecorded
    ReviewRequested = events.ReviewRequested
    Completed = events.Completed
    Failed = events.Failed
    Approved = events.Approved
    Declined = events.Declined
    ChangesRequested = events.ChangesRequested
    MergeStarted = events.MergeStarted
    MergeCompleted = events.MergeCompleted
    LeaseRenewed = lease_events.LeaseRenewed
    LeaseExpired = lease_events.LeaseExpired
    RetryScheduled = events.RetryScheduled
    MergeFailed = events.MergeFailed
    MergeRefused = events.MergeRefused
    Archived = events.Archived
    Deleted = events.Deleted
    PlanSet = plan_events.PlanSet
    SubtaskDispatched = plan_events.SubtaskDispatched
    SubtaskCompleted = plan_events.SubtaskCompleted
    SubtaskFailed = plan_events.SubtaskFailed
    SubtaskBlocked = plan_events.SubtaskBlocked
    SubtaskCancelled = plan_events.SubtaskCancelled
    SubtaskRetried = plan_events.SubtaskRetried
    SubtaskUnblocked = plan_events.SubtaskUnblocked
    SubtaskReopened = plan_events.SubtaskReopened
    GateResolved = gate_events.GateResolved
    OptionChanged = gate_events.OptionChanged
    DirectiveIssued = gate_events.DirectiveIssued
    DirectiveDelivered = gate_events.DirectiveDelivered

    # Taken by the engine every SNAPSHOT_EVERY events (api/service/engine.py): a run is
    # loaded from its latest snapshot and the events after it, at any version.
    Snapshot = RunSnapshot

    # -- construction -------------------------------------------------------------------

    @classmethod
    def submit(
        cls,
        *,
        run_id: UUID,
        owner: str,
        task: str,
        now: datetime,
        project_id: str | None = None,
        parent_run_id: str | None = None,
        retried_from: str | None = None,
        repository_path: str | None = None,
        originating_branch: str | None = None,
        agent: str | None = None,
        model: str | None = None,
        max_attempts: int = 1,
        auto_approve_tools: bool = False,
        subtask_key: str | None = None,
        comment: str | None = None,
        task_id: str | None = None,
    ) -> Run:
        """Submit a new run, pending until a runner claims it."""
        if not task.strip():
            raise Invalid("The task must not be empty.", "task")
        if not 1 <= max_attempts <= 10:
            raise Invalid("max_attempts must be between 1 and 10.", "max_attempts")
        return cls._create(
            cls.Submitted,
            id=run_id,
            timestamp=now,
            actor=owner,
            owner=owner,
            task=task,
            project_id=project_id,
            parent_run_id=parent_run_id,
            retried_from=retried_from,
            repository_path=repository_path,
            originating_branch=originating_branch,
            agent=agent,
            model=model,
            max_attempts=max_attempts,
            auto_approve_tools=auto_approve_tools,
            subtask_key=subtask_key,
            comment=comment,
            task_id=task_id,
        )

    # -- copies -------------------------------------------------------------------------

    def __deepcopy__(self, memo: dict[int, Any]) -> Run:
        """A copy sharing nothing mutable: what the engine decides on, every command. A
        run's state is plain data (text, numbers, ids, times, and dicts and lists of them),
        copied here directly, several times faster than copy.deepcopy's general walk."""
        clone = object.__new__(type(self))
        clone.__dict__.update({name: _fresh(value) for name, value in self.__dict__.items()})
        return clone

    # -- queries ------------------------------------------------------------------------

    @property
    def is_terminal(self) -> bool:
        """True once the run reached a status it never leaves."""
        return self.status in TERMINAL

    @property
    def branch_name(self) -> str:
        """The branch holding the run's work: the one its runner reported, or its own."""
        return self.branch or own_branch(self.id)

    @property
    def target_branch(self) -> str:
        """The branch the run merges into."""
        return merge_target(self.originating_branch)

    @property
    def is_claimable(self) -> bool:
        """True while the run waits for a runner: pending, or sent back for changes (never
        a coordinator: its children are claimed instead)."""
        return (
            not self.deleted
            and self.plan is None
            and (self.status == PENDING or (self.status == IN_PROGRESS and self.lease is None))
        )

    def assignment(self) -> dict[str, Any]:
        """What a runner is given with its claim: the run's work, as plain values."""
        return {
            "run_id": str(self.id),
            "task": self.task,
            "attempt": self.attempt,
            "revision": self.revision,
            "comment": self.comment,
            "repository_path": self.repository_path,
            "originating_branch": self.originating_branch,
            "agent": self.agent,
            "model": self.model,
            "max_attempts": self.max_attempts,
            "auto_approve_tools": self.auto_approve_tools,
            "directives": self.unapplied_directives(),
        }

    def check_visible_to(self, user: str) -> None:
        """Raise NotFound unless the run exists for this user (not deleted, theirs)."""
        if self.deleted or self.owner != user:
            raise NotFound("No such run.")

    # -- commands -----------------------------------------------------------------------

    def pause(self, *, actor: str, now: datetime) -> None:
        """Pause a run in progress."""
        self._require(IN_PROGRESS, "Only a run in progress can be paused.")
        self._trigger(self.Paused, now, actor)

    def resume(self, *, actor: str, now: datetime) -> None:
        """Resume a paused run."""
        self._require(PAUSED, "Only a paused run can be resumed.")
        self._trigger(self.Resumed, now, actor)

    def cancel(self, *, actor: str, now: datetime, reason: str | None = None) -> None:
        """Cancel a run that has not ended; its lease is void from now on."""
        if self.is_terminal:
            raise Conflict("The run has already ended.", self.status)
        if self.status == MERGING:
            raise Conflict("The run is being merged; it cannot be cancelled now.", self.status)
        self.end_plan(actor, now)
        self._trigger(self.Cancelled, now, actor, reason=reason)

    def archive(self, *, actor: str, now: datetime) -> None:
        """Hide the run from default listings; archiving twice changes nothing."""
        if self.archived_at is None:
            self._trigger(self.Archived, now, actor)

    def delete(self, *, actor: str, now: datetime) -> None:
        """Delete the run from every read model (cancelling it first if it is active)."""
        if self.deleted:
            return
        if not self.is_terminal:
            self.cancel(actor=actor, now=now, reason="deleted")
        self._trigger(self.Deleted, now, actor)

    # -- helpers ------------------------------------------------------------------------

    def end(self, status: str, at: datetime) -> None:
        """Enter a terminal status (used by the events' apply methods)."""
        self.status = status
        self.ended_at = at
        self.lease = None

    def _require(self, status: str, message: str) -> None:
        if self.status != status:
            raise Conflict(message, self.status)

    def _trigger(
        self, event_class: Callable[..., events.Event], now: datetime, actor: str, **kw: Any
    ) -> None:
        # The library's trigger_event, minus re-resolving the class's topic on every event
        # (all of Run's topics are registered when the class is made): a 500-event batch
        # of runner output spent most of its time there. (A callable to the type checker:
        # the library's metaclass makes each event class a dataclass, which it cannot see.)
        self._record(
            event_class(
                originator_id=self.id,
                originator_version=self.version + 1,
                timestamp=now,
                actor=actor,
                **kw,
            )
        )

    def _record(self, event: events.Event) -> None:
        """Apply a new event to the run and keep it for the next save."""
        event.mutate(self)
        self.pending_events.append(event)


_SHARED = frozenset({str, int, float, bool, type(None), UUID, datetime})  # immutable


def _fresh(value: Any) -> Any:
    """A deep copy of plain data (copy.deepcopy for anything else)."""
    kind = type(value)
    if kind in _SHARED:
        return value
    if kind is dict:
        return {key: _fresh(item) for key, item in value.items()}
    if kind is list:
        return [_fresh(item) for item in value]
    return deepcopy(value)
