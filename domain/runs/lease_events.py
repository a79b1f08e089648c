"""The events of a run's lease: a runner claims the run, confirms the claim by speaking
under it, renews the lease; the engine gives back a claim never confirmed, or expires a
lease that lapsed. Attributes of `Run` like the rest (domain/runs/aggregate.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain.runs.events import Event
from domain.runs.states import IN_PROGRESS, PAUSED, PENDING
from domain.timestamps import format_timestamp

if TYPE_CHECKING:
    from domain.runs.aggregate import Run


class Claimed(Event):
    """A runner took the run. v2 names the runner the lease belongs to (`runner`, the
    key's name) apart from the instance it said it was (`runner_id`); v3 the time by which
    the runner must confirm the claim (`confirm_by`: its first event, heartbeat or report),
    or the claim is abandoned (None for claims from before v3: they are never abandoned)."""

    TYPE = "run.claimed"
    WAKES = ("lease-expiry",)
    class_version = 3
    runner_id: str
    lease_id: str
    fencing_token: int
    lease_expires_at: str
    runner: str
    confirm_by: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["runner"] = state["runner_id"]

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["confirm_by"] = None

    def apply(self, run: Run) -> None:
        before = run.status
        run.status = IN_PROGRESS
        run.lease = {
            "lease_id": self.lease_id,
            "runner": self.runner,
            "runner_id": self.runner_id,
            "fencing_token": self.fencing_token,
            "expires_at": self.lease_expires_at,
            "claimed_at": format_timestamp(self.timestamp),
            "renewed_at": None,
            "confirm_by": self.confirm_by,
            "confirmed": self.confirm_by is None,
            "first": run.started_at is None,  # this claim started the run
            "before": before,  # pending, or in progress sent back for changes
        }
        run.fencing_token = self.fencing_token
        if run.started_at is None:
            run.started_at = self.timestamp


class ClaimAbandoned(Event):
    """A claim its runner never confirmed (its client went away before the answer, or the
    answer was lost): the run is claimable again as it was before the claim (pending, or in
    progress when sent back for changes; a run paused meanwhile stays paused, claimable
    once resumed), the attempt unused, the lease void."""

    TYPE = "run.claim_abandoned"
    MAKES_CLAIMABLE = True
    lease_id: str
    fencing_token: int
    runner: str
    runner_id: str
    reason: str  # "client_disconnected" or "not_confirmed"

    def apply(self, run: Run) -> None:
        lease = run.lease or {}
        if lease.get("first"):
            run.started_at = None
        if run.status != PAUSED:
            run.status = lease.get("before", PENDING)
        run.lease = None


class LeaseRenewed(Event):
    TYPE = "lease.renewed"
    WAKES = ("lease-expiry",)
    lease_id: str
    lease_expires_at: str

    def apply(self, run: Run) -> None:
        run.lease = {
            **(run.lease or {}),
            "expires_at": self.lease_expires_at,
            "renewed_at": format_timestamp(self.timestamp),
            "confirmed": True,
        }


class LeaseExpired(Event):
    TYPE = "lease.expired"
    lease_id: str
    fencing_token: int

    def apply(self, run: Run) -> None:
        run.lease = None
