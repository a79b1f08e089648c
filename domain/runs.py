"""The Run aggregate: one agent run, its state machine and its events.

A command method checks, then triggers an event; an event's ``apply`` only changes state.
Ids and times come in from the caller, so replaying the events always gives the same run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import Conflict, Invalid, NotFound, StaleLease
from domain.events import WireNamed, make_event
from domain.run_states import (  # noqa: F401 - re-exported: the run's vocabulary
    AWAITING_REVIEW,
    CANCELLED,
    COMPLETED,
    DECLINED,
    FAILED,
    FAILURE_CATEGORIES,
    IN_PROGRESS,
    INITIAL_STATE,
    MERGE_FAILED,
    MERGED,
    MERGING,
    OUTCOMES,
    OUTPUT_TYPES,
    OWN_BRANCH_PREFIX,
    PAUSED,
    PENDING,
    STATUSES,
    TERMINAL,
    TRANSIENT,
    check_output,
    decision_took_effect,
    merge_target,
    own_branch,
    retry_delay,
    review_record,
)
from domain.timestamps import format_timestamp, parse_timestamp


class Run(Aggregate):
    """An agent run: submitted, claimed by a runner, reported, reviewed, merged."""

    TOPIC = "runledger:Run"

    class Event(WireNamed, Aggregate.Event):
        """Every run event names who caused it."""

        actor: str

    class Submitted(Event, Aggregate.Created):
        TYPE = "run.submitted"
        MAKES_CLAIMABLE = True
        WAKES = ("project-cleanup",)  # a run may land in a project being deleted
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

    Created = Submitted  # the library's name for the creation event

    class Claimed(Event):
        """A runner took the run. v2 names the runner the lease belongs to (`runner`, the
        key's name) apart from the instance it said it was (`runner_id`)."""

        TYPE = "run.claimed"
        WAKES = ("lease-expiry",)
        class_version = 2
        runner_id: str
        lease_id: str
        fencing_token: int
        lease_expires_at: str
        runner: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["runner"] = state["runner_id"]

        def apply(self, run: Run) -> None:
            run.status = IN_PROGRESS
            run.lease = {
                "lease_id": self.lease_id,
                "runner": self.runner,
                "runner_id": self.runner_id,
                "fencing_token": self.fencing_token,
                "expires_at": self.lease_expires_at,
            }
            run.fencing_token = self.fencing_token
            if run.started_at is None:
                run.started_at = self.timestamp

    class Paused(Event):
        TYPE = "run.paused"
        KEEPS_LEASE = True

        def apply(self, run: Run) -> None:
            run.status = PAUSED

    class Resumed(Event):
        TYPE = "run.resumed"
        KEEPS_LEASE = True

        def apply(self, run: Run) -> None:
            run.status = IN_PROGRESS

    class Cancelled(Event):
        TYPE = "run.cancelled"
        ENDS_RUN = True
        reason: str | None

        def apply(self, run: Run) -> None:
            run.end(CANCELLED, self.timestamp)

    class OutputRecorded(Event):
        """Runner output (agent messages, tool calls, steps, logs): its wire type is `kind`."""

        TOPIC = "runledger:run.output"
        KEEPS_LEASE = True
        kind: str
        data: dict[str, Any]

        def wire_type(self) -> str:
            return self.kind

        def apply(self, run: Run) -> None:
            if self.kind == "step.started":
                run.step_count += 1
            elif self.kind == "gate.opened":
                run.open_gates = [
                    *run.open_gates,
                    {
                        "gate_id": self.data["gate_id"],
                        "kind": self.data.get("kind"),
                        "prompt": self.data.get("prompt"),
                        "opened_at": self.timestamp,
                    },
                ]

    class ReviewRequested(Event):
        """The runner reported changes: the run waits for a human review."""

        TYPE = "run.review_requested"
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

    class Completed(Event):
        TYPE = "run.completed"
        ENDS_RUN = True

        def apply(self, run: Run) -> None:
            run.result = "no_changes"
            run.lease = None
            run.end(COMPLETED, self.timestamp)

    class Failed(Event):
        TYPE = "run.failed"
        ENDS_RUN = True
        category: str
        message: str

        def apply(self, run: Run) -> None:
            run.result = "failed"
            run.failure = {"category": self.category, "message": self.message}
            run.lease = None
            run.end(FAILED, self.timestamp)

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
        ENDS_RUN = True
        comment: str | None

        def apply(self, run: Run) -> None:
            run.review = review_record("declined", self.actor, self.comment, self.timestamp)
            run.end(DECLINED, self.timestamp)

    class ChangesRequested(Event):
        TYPE = "review.changes_requested"
        MAKES_CLAIMABLE = True
        comment: str | None

        def apply(self, run: Run) -> None:
            run.status = IN_PROGRESS
            run.revision += 1
            run.comment = self.comment
            run.review = review_record(
                "changes_requested", self.actor, self.comment, self.timestamp
            )

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
        ENDS_RUN = True
        merge_result: str | None

        def apply(self, run: Run) -> None:
            run.merge_result = self.merge_result
            run.end(MERGED, self.timestamp)

    class LeaseRenewed(Event):
        TYPE = "lease.renewed"
        WAKES = ("lease-expiry",)
        lease_id: str
        lease_expires_at: str

        def apply(self, run: Run) -> None:
            run.lease = {**(run.lease or {}), "expires_at": self.lease_expires_at}

    class LeaseExpired(Event):
        TYPE = "lease.expired"
        lease_id: str
        fencing_token: int

        def apply(self, run: Run) -> None:
            run.lease = None

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
        ENDS_RUN = True
        reason: str
        conflicting_files: list[str]

        def apply(self, run: Run) -> None:
            run.conflicting_files = self.conflicting_files
            run.failure = {"category": "merge", "message": self.reason}
            run.end(MERGE_FAILED, self.timestamp)

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
        )

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
        """True while the run waits for a runner: pending, or sent back for changes."""
        return not self.deleted and (
            self.status == PENDING or (self.status == IN_PROGRESS and self.lease is None)
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
        }

    def check_visible_to(self, user: str) -> None:
        """Raise NotFound unless the run exists for this user (not deleted, theirs)."""
        if self.deleted or self.owner != user:
            raise NotFound("No such run.")

    # -- commands -----------------------------------------------------------------------

    def claim(
        self,
        *,
        runner_id: str,
        lease_id: str,
        lease_expires_at: str,
        now: datetime,
        runner: str | None = None,
    ) -> None:
        """Give the run to a runner under a new lease with the next fencing token; only that
        runner (`runner`, by default `runner_id`) may then speak for the run."""
        runner = runner or runner_id
        if not self.is_claimable:
            raise Conflict("The run is not waiting for a runner.", self.status)
        if self.not_before is not None and parse_timestamp(self.not_before) > now:
            raise Conflict("The run is waiting out its retry backoff.", self.status)
        self._trigger(
            self.Claimed,
            now,
            runner,
            runner_id=runner_id,
            lease_id=lease_id,
            fencing_token=self.fencing_token + 1,
            lease_expires_at=lease_expires_at,
            runner=runner,
        )

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
        self._trigger(self.Cancelled, now, actor, reason=reason)

    def record_output(
        self,
        *,
        fencing_token: int,
        events: list[tuple[str, dict[str, Any]]],
        actor: str,
        now: datetime,
    ) -> None:
        """Append a runner's output events, all or none, under its current lease."""
        self._check_lease(fencing_token, actor)
        check_output(events)
        for kind, data in events:  # hundreds per request: events made the cheap way
            fields = {"actor": actor, "kind": kind, "data": dict(data)}
            event = make_event(self.OutputRecorded, self.id, self.version + 1, now, **fields)
            event.mutate(self)
            self.pending_events.append(event)

    def report(
        self,
        *,
        fencing_token: int,
        outcome: str,
        actor: str,
        now: datetime,
        tree_hash: str | None = None,
        diff_stats: dict[str, int] | None = None,
        branch: str | None = None,
        failure: dict[str, str] | None = None,
        retry_backoff: float = 0.0,
    ) -> None:
        """Record the runner's outcome: changes to review, no changes, or a failure.

        A failure of a transient category with attempts left schedules a retry instead.
        """
        self._check_lease(fencing_token, actor)
        if outcome == "changes":
            self._trigger(
                self.ReviewRequested,
                now,
                actor,
                tree_hash=tree_hash,
                diff_stats=dict(diff_stats) if diff_stats is not None else None,
                branch=branch,
            )
        elif outcome == "no_changes":
            self._trigger(self.Completed, now, actor)
        elif outcome == "failed":
            failure = failure or {"category": "other", "message": "The runner reported a failure."}
            if failure.get("category") not in FAILURE_CATEGORIES:
                raise Invalid("Unknown failure category.", "failure")
            if not isinstance(failure.get("message"), str):
                raise Invalid("A failure needs a message.", "failure")
            self._fail_attempt(failure["category"], failure["message"], actor, now, retry_backoff)
        else:
            raise Invalid(f"Unknown outcome {outcome!r}.", "outcome")

    def decide_review(
        self,
        *,
        approved: bool,
        request_changes: bool,
        comment: str | None,
        actor: str,
        now: datetime,
    ) -> None:
        """Approve (then merge), decline, or send back for changes; a repeat is a no-op."""
        decision = (
            "approved" if approved else "changes_requested" if request_changes else "declined"
        )
        if self.status != AWAITING_REVIEW:
            if decision_took_effect(self.review, self.status, decision):
                return
            raise Conflict("The run is not awaiting review.", self.status)
        if decision == "approved":
            self._trigger(self.Approved, now, actor, comment=comment)
            if self.repository_path is None:
                # Nothing to merge: the approval is the merge.
                self._trigger(self.MergeCompleted, now, actor, merge_result=None)
        elif decision == "declined":
            self._trigger(self.Declined, now, actor, comment=comment)
        else:
            self._trigger(self.ChangesRequested, now, actor, comment=comment)

    def renew_lease(
        self, *, lease_id: str, lease_expires_at: str, runner: str, now: datetime
    ) -> None:
        """Extend the current lease (StaleLease once it was lost, replaced, or not theirs)."""
        if self.lease is None or self.lease["lease_id"] != lease_id:
            raise StaleLease("The lease is no longer current.")
        if self.lease["runner"] != runner:
            raise StaleLease("The lease is no longer current.")
        self._trigger(
            self.LeaseRenewed,
            now,
            runner,
            lease_id=lease_id,
            lease_expires_at=lease_expires_at,
        )

    def expire_lease(self, *, fencing_token: int, now: datetime, retry_backoff: float) -> None:
        """Expire the lease with this token if it has lapsed; otherwise change nothing."""
        lease = self.lease
        if lease is None or lease["fencing_token"] != fencing_token:
            return
        if parse_timestamp(lease["expires_at"]) > now:
            return
        self._trigger(
            self.LeaseExpired,
            now,
            "engine",
            lease_id=lease["lease_id"],
            fencing_token=fencing_token,
        )
        self._fail_attempt(
            "runner-transient", "The runner's lease expired.", "engine", now, retry_backoff
        )

    def start_merge(
        self, *, target: str, old_commit: str, tip: str, merge_commit: str, now: datetime
    ) -> None:
        """Record the merge about to be published (a repeat of the latest is a no-op)."""
        self._require(MERGING, "The run is not merging.")
        started = {"target": target, "old_commit": old_commit, "tip": tip}
        if self.merge_started == {**started, "merge_commit": merge_commit}:
            return
        self._trigger(self.MergeStarted, now, "engine", **started, merge_commit=merge_commit)

    def complete_merge(self, *, merge_result: str, now: datetime) -> None:
        """Record the merge commit."""
        self._require(MERGING, "The run is not merging.")
        self._trigger(self.MergeCompleted, now, "engine", merge_result=merge_result)

    def fail_merge(self, *, reason: str, conflicting_files: list[str], now: datetime) -> None:
        """Record a merge that cannot succeed (conflicts, a changed branch)."""
        self._require(MERGING, "The run is not merging.")
        self._trigger(
            self.MergeFailed, now, "engine", reason=reason, conflicting_files=conflicting_files
        )

    def refuse_merge(self, *, reason: str, now: datetime) -> None:
        """Send the run back to review: the merge cannot start now (approve again later)."""
        self._require(MERGING, "The run is not merging.")
        self._trigger(self.MergeRefused, now, "engine", reason=reason)

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

    def _fail_attempt(
        self, category: str, message: str, actor: str, now: datetime, retry_backoff: float
    ) -> None:
        if category in TRANSIENT and self.attempt < self.max_attempts:
            delay = retry_delay(retry_backoff, self.attempt)
            self._trigger(
                self.RetryScheduled,
                now,
                actor,
                attempt=self.attempt + 1,
                not_before=format_timestamp(now + timedelta(seconds=delay)),
                category=category,
                message=message,
            )
        else:
            self._trigger(self.Failed, now, actor, category=category, message=message)

    def _require(self, status: str, message: str) -> None:
        if self.status != status:
            raise Conflict(message, self.status)

    def _check_lease(self, fencing_token: int, runner: str) -> None:
        lease = self.lease
        if lease is None or lease["fencing_token"] != fencing_token or lease["runner"] != runner:
            raise StaleLease("The lease or fencing token is no longer current.")

    def _trigger(self, event_class: type[Run.Event], now: datetime, actor: str, **kw: Any) -> None:
        # The library's trigger_event, minus re-resolving the class's topic on every event
        # (all of Run's topics are registered when the class is made): a 500-event batch
        # of runner output spent most of its time there.
        event = event_class(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=now,
            actor=actor,
            **kw,
        )
        event.mutate(self)
        self.pending_events.append(event)
