"""A coordinator's commands: set its work plan, move its subtasks as their child runs end,
dispatch what became ready, ask for the assembly review, re-open subtasks. Mixed into `Run`
(domain/runs/aggregate.py); the graph rules are domain/plans.py's.

Every command is idempotent given the same facts: the coordination policy may run one
twice (a crash, two processes) and the second changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from domain import plans
from domain.errors import Conflict, Invalid
from domain.plans import (
    BLOCKED,
    CHILD_FAILURE,
    CHILD_SUCCESS,
    COMPLETED,
    DISPATCHED,
    FAILED,
    PLANNED,
    WAITING,
)
from domain.runs.events import Failed, ReviewRequested
from domain.runs.plan_events import (
    PlanSet,
    SubtaskBlocked,
    SubtaskCancelled,
    SubtaskCompleted,
    SubtaskDispatched,
    SubtaskFailed,
    SubtaskReopened,
    SubtaskRetried,
    SubtaskUnblocked,
)
from domain.runs.states import IN_PROGRESS, PENDING, RunState

COORDINATOR_ACTOR = "coordinator"


class CoordinatorCommands(RunState):
    """The Run's commands as a coordinator of child runs."""

    # -- queries ------------------------------------------------------------------------

    @property
    def subtasks(self) -> dict[str, dict[str, Any]]:
        """The plan's subtasks by key, in plan order (empty without a plan)."""
        if self.plan is None:
            return {}
        subtasks: dict[str, dict[str, Any]] = self.plan["subtasks"]
        return subtasks

    @property
    def integration_branch(self) -> str | None:
        """The branch a coordinator's children start from and merge into (with a
        repository)."""
        return None if self.plan is None else self.plan["integration_branch"]

    @property
    def auto_approve_children(self) -> bool:
        """True when the coordinator approves its children's work itself."""
        return self.plan is not None and bool(self.plan["auto_approve_children"])

    @property
    def is_coordinator(self) -> bool:
        """True once the run has a work plan."""
        return self.plan is not None

    @property
    def depends_on(self) -> dict[str, list[str]]:
        """Each subtask's dependencies, in plan order."""
        return {key: s["depends_on"] for key, s in self.subtasks.items()}

    def subtasks_in(self, *statuses: str) -> list[str]:
        """The keys of the subtasks in these statuses, in plan order."""
        return [k for k, s in self.subtasks.items() if s["status"] in statuses]

    @property
    def ready_for_assembly(self) -> bool:
        """True when every subtask completed and the coordinator has not asked for its
        review yet."""
        return (
            self.plan is not None
            and self.status == IN_PROGRESS
            and all(s["status"] == COMPLETED for s in self.subtasks.values())
        )

    # -- commands -----------------------------------------------------------------------

    def set_plan(
        self,
        *,
        subtasks: Sequence[Mapping[str, Any]],
        auto_approve_children: bool,
        integration_branch: str | None,
        actor: str,
        now: datetime,
        fencing_token: int | None = None,
    ) -> None:
        """Make the run a coordinator with this plan: its owner's while it is pending (or
        to replace a plan nothing was dispatched from), or its planner runner's, whose
        fencing token is current (and whose lease ends with it)."""
        checked = plans.check_plan(subtasks)
        if fencing_token is not None:
            self._check_lease(fencing_token, actor)
        elif self.plan is not None:
            dispatched = any(s["attempts"] for s in self.subtasks.values())
            if dispatched or self.coordinator_status != PLANNED:
                raise Conflict("Subtasks were dispatched; the plan is fixed.", self.status)
        elif self.status != PENDING:
            raise Conflict("Only a pending run can be given a work plan.", self.status)
        self._trigger(
            PlanSet,
            now,
            actor,
            subtasks=checked,
            auto_approve_children=auto_approve_children,
            integration_branch=integration_branch,
        )

    def advance_plan(
        self,
        *,
        children: Mapping[str, str],
        now: datetime,
        child_id: Callable[[str, int], UUID],
    ) -> None:
        """Move the plan on from what its children's statuses (`children`: child run id →
        status, as far as known) say: ended children end their subtasks, the dependents of
        failed ones are blocked, ready subtasks are dispatched (their child ids from
        `child_id(key, round)`), and with a failure and nothing left running the
        coordinator fails. Asking for the assembly review is `request_assembly`."""
        if self.plan is None or self.status != IN_PROGRESS:
            return
        for key in self.subtasks_in(DISPATCHED):
            child = self.subtasks[key]["child_run_id"]
            status = children.get(child)
            if status in CHILD_SUCCESS:
                self._trigger(SubtaskCompleted, now, COORDINATOR_ACTOR, key=key, child_run_id=child)
            elif status in CHILD_FAILURE:
                self._trigger(
                    SubtaskFailed,
                    now,
                    COORDINATOR_ACTOR,
                    key=key,
                    child_run_id=child,
                    child_status=status,
                )
        failed = self.subtasks_in(FAILED)
        for key in plans.dependents(self.depends_on, failed):
            if self.subtasks[key]["status"] == WAITING:
                reason = f"depends on failed subtasks: {', '.join(failed)}"
                self._trigger(SubtaskBlocked, now, COORDINATOR_ACTOR, key=key, reason=reason)
        done = set(self.subtasks_in(COMPLETED))
        for key in self.subtasks_in(WAITING):
            subtask = self.subtasks[key]
            if done.issuperset(subtask["depends_on"]):
                round_ = subtask["round"]
                self._trigger(
                    SubtaskDispatched,
                    now,
                    COORDINATOR_ACTOR,
                    key=key,
                    child_run_id=str(child_id(key, round_)),
                    round=round_,
                )
        if failed and not self.subtasks_in(DISPATCHED, WAITING):
            message = f"Subtasks failed: {', '.join(failed)}."
            self._trigger(Failed, now, COORDINATOR_ACTOR, category="subtask", message=message)

    def request_assembly(
        self, *, tree_hash: str | None, diff_stats: dict[str, int] | None, now: datetime
    ) -> None:
        """Every subtask completed: the coordinator awaits the review of the combined work
        (on its integration branch, when it has a repository). A repeat changes nothing."""
        if not self.ready_for_assembly:
            return
        self._trigger(
            ReviewRequested,
            now,
            COORDINATOR_ACTOR,
            tree_hash=tree_hash,
            diff_stats=dict(diff_stats) if diff_stats is not None else None,
            branch=self.integration_branch,
        )

    def retry_subtask(
        self, *, key: str, failed_child: str, new_child: str, actor: str, now: datetime
    ) -> None:
        """The failed child of `key` was retried as `new_child`: it is the subtask's child
        now, and the subtasks blocked only by this one wait again."""
        subtask = self.subtasks.get(key, {})
        if (subtask.get("status"), subtask.get("child_run_id")) != (FAILED, failed_child):
            raise Conflict("The subtask is not failed with this run as its child.", self.status)
        if self.status not in (IN_PROGRESS, FAILED):
            raise Conflict("The coordinator has ended.", self.status)
        self._trigger(
            SubtaskRetried,
            now,
            actor,
            key=key,
            child_run_id=new_child,
            retried_from=failed_child,
        )
        still_blocked = set(plans.dependents(self.depends_on, self.subtasks_in(FAILED)))
        for blocked in self.subtasks_in(BLOCKED):
            if blocked not in still_blocked:
                self._trigger(SubtaskUnblocked, now, actor, key=blocked)

    def reopen_subtasks(
        self, keys: list[str] | None, comment: str | None, actor: str, now: datetime
    ) -> None:
        """After a request for changes: the named subtasks (all when None) and everything
        depending on them are done again, in a new round carrying the comment."""
        known = self.subtasks
        unknown = [k for k in keys or () if k not in known]
        if unknown:
            raise Invalid(f"Unknown subtasks: {', '.join(unknown)}.", "subtasks")
        named = list(known) if keys is None else list(dict.fromkeys(keys))
        again = set(named) | set(plans.dependents(self.depends_on, named))
        for key in (k for k in known if k in again):
            round_ = known[key]["round"] + 1
            self._trigger(SubtaskReopened, now, actor, key=key, round=round_, comment=comment)

    def end_plan(self, actor: str, now: datetime) -> None:
        """The coordinator is being cancelled: its active subtasks are cancelled, the
        waiting ones blocked (before the run's own end, its stream's last event)."""
        if self.plan is None:
            return
        for key in self.subtasks_in(DISPATCHED):
            child = self.subtasks[key]["child_run_id"]
            self._trigger(SubtaskCancelled, now, actor, key=key, child_run_id=child)
        for key in self.subtasks_in(WAITING):
            self._trigger(SubtaskBlocked, now, actor, key=key, reason="the coordinator ended")
