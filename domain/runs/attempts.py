"""A run's attempts under a lease: a runner claims the run, reports output and an outcome,
renews its lease; the engine expires a lapsed one. Mixed into `Run` (domain/runs/aggregate.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from domain.errors import Conflict, Invalid, StaleLease
from domain.events import make_event
from domain.runs.events import (
    Completed,
    Failed,
    OutputRecorded,
    RetryScheduled,
    ReviewRequested,
)
from domain.runs.lease_events import ClaimAbandoned, Claimed, LeaseExpired, LeaseRenewed
from domain.runs.states import (
    FAILURE_CATEGORIES,
    IN_PROGRESS,
    PAUSED,
    TRANSIENT,
    RunState,
    check_output,
    retry_delay,
)
from domain.timestamps import format_timestamp, parse_timestamp


class AttemptCommands(RunState):
    """The Run's commands for a runner's attempt: claim, output, outcome, its lease."""

    def claim(
        self,
        *,
        runner_id: str,
        lease_id: str,
        lease_expires_at: str,
        now: datetime,
        runner: str | None = None,
        confirm_by: str | None = None,
    ) -> None:
        """Give the run to a runner under a new lease with the next fencing token; only that
        runner (`runner`, by default `runner_id`) may then speak for the run. Unless it
        speaks (an event, a heartbeat, a report) by `confirm_by`, the claim may be
        abandoned (`abandon_claim`)."""
        runner = runner or runner_id
        if not self.is_claimable:
            raise Conflict("The run is not waiting for a runner.", self.status)
        if self.not_before is not None and parse_timestamp(self.not_before) > now:
            raise Conflict("The run is waiting out its retry backoff.", self.status)
        self._trigger(
            Claimed,
            now,
            runner,
            runner_id=runner_id,
            lease_id=lease_id,
            fencing_token=self.fencing_token + 1,
            lease_expires_at=lease_expires_at,
            runner=runner,
            confirm_by=confirm_by,
        )

    def abandon_claim(self, *, fencing_token: int, now: datetime, client_gone: bool) -> None:
        """Give the run back (pending, no attempt used) if the claim under this token was
        never confirmed: at once when the claiming client is known to be gone (`client_gone`),
        else once its confirm time passed. Otherwise (confirmed, another lease, a claim
        from before confirmation, a run neither in progress nor paused) change nothing."""
        lease = self.lease
        if self.status not in (IN_PROGRESS, PAUSED) or lease is None:
            return
        if lease["fencing_token"] != fencing_token or lease.get("confirmed", True):
            return
        confirm_by = lease.get("confirm_by")
        if not client_gone and (confirm_by is None or parse_timestamp(confirm_by) > now):
            return
        self._trigger(
            ClaimAbandoned,
            now,
            "engine",
            lease_id=lease["lease_id"],
            fencing_token=fencing_token,
            runner=lease["runner"],
            runner_id=lease["runner_id"],
            reason="client_disconnected" if client_gone else "not_confirmed",
        )

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
            self._record(make_event(OutputRecorded, self.id, self.version + 1, now, **fields))

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
                ReviewRequested,
                now,
                actor,
                tree_hash=tree_hash,
                diff_stats=dict(diff_stats) if diff_stats is not None else None,
                branch=branch,
            )
        elif outcome == "no_changes":
            self._trigger(Completed, now, actor)
        elif outcome == "failed":
            failure = failure or {"category": "other", "message": "The runner reported a failure."}
            if failure.get("category") not in FAILURE_CATEGORIES:
                raise Invalid("Unknown failure category.", "failure")
            if not isinstance(failure.get("message"), str):
                raise Invalid("A failure needs a message.", "failure")
            self._fail_attempt(failure["category"], failure["message"], actor, now, retry_backoff)
        else:
            raise Invalid(f"Unknown outcome {outcome!r}.", "outcome")

    def renew_lease(
        self, *, lease_id: str, lease_expires_at: str, runner: str, now: datetime
    ) -> None:
        """Extend the current lease (StaleLease once it was lost, replaced, or not theirs)."""
        if self.lease is None or self.lease["lease_id"] != lease_id:
            raise StaleLease("The lease is no longer current.")
        if self.lease["runner"] != runner:
            raise StaleLease("The lease is no longer current.")
        self._trigger(
            LeaseRenewed,
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
            LeaseExpired,
            now,
            "engine",
            lease_id=lease["lease_id"],
            fencing_token=fencing_token,
        )
        self._fail_attempt(
            "runner-transient", "The runner's lease expired.", "engine", now, retry_backoff
        )

    def _fail_attempt(
        self, category: str, message: str, actor: str, now: datetime, retry_backoff: float
    ) -> None:
        if category in TRANSIENT and self.attempt < self.max_attempts:
            delay = retry_delay(retry_backoff, self.attempt)
            self._trigger(
                RetryScheduled,
                now,
                actor,
                attempt=self.attempt + 1,
                not_before=format_timestamp(now + timedelta(seconds=delay)),
                category=category,
                message=message,
            )
        else:
            self._trigger(Failed, now, actor, category=category, message=message)

    def _check_lease(self, fencing_token: int, runner: str) -> None:
        lease = self.lease
        if lease is None or lease["fencing_token"] != fencing_token or lease["runner"] != runner:
            raise StaleLease("The lease or fencing token is no longer current.")
