"""Work plan use cases: set a run's plan (making its integration branch first), and read
the plan, the children and the graph from the read models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters import git, readmodels
from adapters.db import Cursor
from api.service.engine import Appended
from domain import plans
from domain.errors import Conflict, Invalid, NotFound
from domain.runs import PENDING, merge_target, own_branch
from projections.plans import children_doc, plan_graph, plan_view, run_graph

if TYPE_CHECKING:
    from api.service.bootstrap import Services


def set_work_plan(
    services: Services,
    run_id: UUID,
    caller: str,
    *,
    subtasks: Sequence[Mapping[str, Any]],
    auto_approve_children: bool,
    fencing_token: int | None = None,
) -> Appended:
    """Give the run its plan: its owner's (no fencing token) or its planner runner's,
    who must hold the run's lease (any other runner: not found). With a repository the
    coordinator's integration branch is made from its originating branch first."""
    engine = services.engine
    plans.check_plan(subtasks)  # a bad plan is refused before git is touched
    if fencing_token is None:
        run = engine.get_run(run_id, caller)
        if run.plan is None and run.status != PENDING:
            raise Conflict("Only a pending run can be given a work plan.", run.status)
    else:
        run = engine.get_run(run_id)
        if run.deleted or (run.lease or {}).get("runner") != caller:
            raise NotFound("No such run.")
    branch = None
    if run.repository_path is not None:
        branch = own_branch(run.id)
        try:
            git.create_branch(run.repository_path, branch, run.target_branch)
        except git.MissingRevision:
            raise Conflict(
                f"The originating branch {run.target_branch} does not exist.", run.status
            ) from None
    return engine.set_work_plan(
        run_id,
        caller,
        subtasks=subtasks,
        auto_approve_children=auto_approve_children,
        integration_branch=branch,
        fencing_token=fencing_token,
    )


def submission_plan(
    services: Services, owner: str, project_id: UUID | None, options: dict[str, Any]
) -> dict[str, Any] | None:
    """The plan a run is submitted with (`options["work_plan"]`, taken out), checked, with
    the run's id chosen and, in a project with a repository, its integration branch made
    from the run's originating branch; None without one."""
    work_plan = options.pop("work_plan", None)
    if work_plan is None:
        return None
    engine = services.engine
    plans.check_plan(work_plan["subtasks"])
    run_id = engine.new_id()
    branch = None
    if project_id is not None:
        project = engine.get_project(project_id, owner)
        if project.repository_path is not None:
            base = merge_target(options.get("originating_branch") or project.default_branch)
            branch = own_branch(run_id)
            try:
                git.create_branch(project.repository_path, branch, base)
            except git.MissingRevision:
                raise Invalid(
                    f"The originating branch {base} does not exist.", "originating_branch"
                ) from None
    return {"run_id": run_id, **work_plan, "integration_branch": branch}


def current_plan(services: Services, run_id: UUID) -> dict[str, Any]:
    """The plan as the command left it (for its answer: the read model may lag)."""
    run = services.engine.get_run(run_id)
    if run.plan is None:
        raise NotFound("The run has no work plan.")
    return plan_view(run)


def work_plan(cur: Cursor, run_id: str, owner: str) -> dict[str, Any] | None:
    """The owner's coordinator's plan, or None."""
    return readmodels.get_plan(cur, run_id, owner)


def children(cur: Cursor, run_id: str, owner: str) -> dict[str, Any] | None:
    """The plan's children beside their subtasks, or None without a plan."""
    plan = readmodels.get_plan(cur, run_id, owner)
    if plan is None:
        return None
    ids = [s["child_run_id"] for s in plan["subtasks"] if s["child_run_id"]]
    return children_doc(plan, readmodels.run_docs(cur, ids))


def graph(cur: Cursor, run_id: str, owner: str) -> dict[str, Any] | None:
    """A coordinator's subtask graph, a plain run's lifecycle graph, or None."""
    plan = readmodels.get_plan(cur, run_id, owner)
    if plan is not None:
        return plan_graph(plan)
    run = readmodels.get_run(cur, run_id, owner)
    return None if run is None else run_graph(run)
