"""Runner use cases beyond one engine call: a report with its branch checked, a heartbeat
that finds the run of its lease, and the runner's right to read the run it holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters import git, readmodels
from api.service.engine import Appended
from api.service.positions import wait_for_head
from domain.errors import Invalid, NotFound, StaleLease
from domain.runs import OWN_BRANCH_PREFIX, Run
from domain.timestamps import format_timestamp

if TYPE_CHECKING:
    from api.service.bootstrap import Services


def branch_refusal(run: Run, branch: str) -> str | None:
    """Why a runner may not report `branch` as the run's branch, or None.

    The branch is what a review diffs and a merge merges: it must be a plain branch
    name that is neither the run's target nor another run's own branch.
    """
    if branch.startswith("refs/") or branch in ("@", "HEAD") or branch.endswith("_HEAD"):
        return "branch must be a plain branch name, not a ref, HEAD or @."
    if branch == run.target_branch:
        return "branch is the run's originating branch, which the run merges into."
    if not branch.startswith(OWN_BRANCH_PREFIX):
        return None
    try:
        other = UUID(branch.removeprefix(OWN_BRANCH_PREFIX))
    except ValueError:
        return None
    return None if other == run.id else "branch is another run's branch (runledger/<run id>)."


def check_branch(
    services: Services, run_id: UUID, runner: str, fencing_token: int, branch: str
) -> None:
    """Invalid for a branch the runner may not report (only asked of the lease's holder, so
    a refused branch tells nothing about someone else's run)."""
    if not git.valid_branch_name(branch):
        raise Invalid("branch is not a valid git branch name.", "branch")
    run = services.engine.get_run(run_id)
    lease = run.lease or {}
    if lease.get("runner") != runner or run.fencing_token != fencing_token:
        return  # the report itself is refused (stale lease) without a word on the branch
    refusal = branch_refusal(run, branch)
    if refusal is not None:
        raise Invalid(refusal, "branch")


def report(
    services: Services,
    run_id: UUID,
    runner: str,
    fencing_token: int,
    outcome: str,
    **details: Any,
) -> Appended:
    """Record the runner's outcome for the run it holds the lease of."""
    branch = details.get("branch")
    if branch is not None:
        check_branch(services, run_id, runner, fencing_token, branch)
    return services.engine.report_outcome(run_id, runner, fencing_token, outcome, **details)


def heartbeat(services: Services, lease_id: str, runner: str) -> dict[str, Any]:
    """Renew a lease: its new expiry, the sequence and position of the renewal, and what
    the runner has yet to act on (resolved gates, redirects and amendments)."""
    run_id = _run_of_lease(services, lease_id)
    if run_id is None:
        # Maybe the claim is newer than the leases view: let it catch up once.
        wait_for_head(services)
        run_id = _run_of_lease(services, lease_id)
    if run_id is None:
        raise StaleLease("The lease is no longer current.")
    beat = services.engine.heartbeat(UUID(run_id), lease_id, runner)
    return {
        "lease_id": lease_id,
        "lease_expires_at": format_timestamp(beat.expires_at),
        "sequence": beat.appended.sequence,
        "position": beat.appended.position,
        "gates": beat.gates,
        "directives": beat.directives,
    }


def lease_holders_owner(services: Services, run_id: UUID, runner: str) -> str:
    """The owner of the run whose current lease `runner` holds, so that the runner reads it
    as its owner would; NotFound for any other run (asked of the run itself, not a read
    model that may lag behind a claim)."""
    run = services.engine.get_run(run_id)
    if run.deleted or (run.lease or {}).get("runner") != runner:
        raise NotFound("No such run.")
    return run.owner


def _run_of_lease(services: Services, lease_id: str) -> str | None:
    with services.db.reading() as cur:
        return readmodels.run_of_lease(cur, lease_id)
