"""Run use cases beyond one engine call: submission (with its checks), review-then-merge,
and a run as it was at a past event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters import git, merges
from api.service.engine import Appended, Engine
from api.service.plans import submission_plan
from api.service.policies import remove_worktree
from domain.errors import Conflict, Invalid, NotFound
from domain.runs import AWAITING_REVIEW, DECLINED, MERGING
from projections.runs import run_view

if TYPE_CHECKING:
    from api.service.bootstrap import Services


def submission_options(
    engine: Engine,
    owner: str,
    *,
    originating_branch: str | None = None,
    parent_run_id: UUID | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The engine's options for a new run (a parent must be one of the owner's runs)."""
    if originating_branch is not None and not git.valid_branch_name(originating_branch):
        raise Invalid("originating_branch is not a valid git branch name.", "originating_branch")
    parent = None
    if parent_run_id is not None:
        try:
            parent = str(engine.get_run(parent_run_id, owner).id)
        except NotFound:
            raise Invalid("No such parent run.", "parent_run_id") from None
    return {"parent_run_id": parent, "originating_branch": originating_branch, **options}


def submit_run(
    services: Services, owner: str, task: str, project_id: UUID | None, **options: Any
) -> Appended:
    """Submit a run, in a project if one is named (an unknown project is a bad argument)."""
    engine = services.engine
    options = submission_options(engine, owner, **options)
    try:
        plan = submission_plan(services, owner, project_id, options)
        if project_id is None:
            return engine.submit_run(owner, task, plan, **options)
        return engine.submit_project_run(project_id, owner, task, plan=plan, **options)
    except NotFound:
        raise Invalid("No such project.", "project_id") from None


def submit_project_run(
    services: Services, project_id: UUID, owner: str, task: str, **options: Any
) -> Appended:
    """Submit a run in the project of the path (an unknown project is not found)."""
    engine = services.engine
    options = submission_options(engine, owner, **options)
    plan = submission_plan(services, owner, project_id, options)
    return engine.submit_project_run(project_id, owner, task, plan=plan, **options)


def review_run(
    services: Services,
    run_id: UUID,
    owner: str,
    *,
    approved: bool,
    request_changes: bool,
    comment: str | None,
    subtasks: list[str] | None = None,
) -> Appended:
    """Review a run: an approval whose merge cannot start is refused; one that can start
    merges now (rather than at the merger's next tick); a declined run's worktree goes."""
    engine = services.engine
    run = engine.get_run(run_id, owner)
    if approved and run.status == AWAITING_REVIEW and run.repository_path:
        refusal = merges.merge_refusal(run.repository_path, run.target_branch)
        if refusal:
            raise Conflict(f"The merge cannot start: {refusal}", run.status)
    appended = engine.review_run(
        run_id,
        owner,
        approved=approved,
        request_changes=request_changes,
        comment=comment,
        subtasks=subtasks,
    )
    if appended.status == MERGING:
        services.runtime.merger.merge(run_id)
        run = engine.get_run(run_id)
        appended = Appended(run.id, run.status, run.version, None)
    elif appended.status == DECLINED:
        remove_worktree(engine.get_run(run_id))
    return appended


def run_at(services: Services, run_id: UUID, owner: str, at: int) -> dict[str, Any]:
    """The run's view as it was after its event `at` (not found past its last event)."""
    engine = services.engine
    run = engine.get_run(run_id, owner)
    if at > run.version:
        raise NotFound(f"The run has no event {at}.")
    return run_view(engine.get_run(run_id, owner, version=at))
