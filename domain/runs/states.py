"""A run's vocabulary: its statuses, the runner event types, outcomes and failure categories."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.errors import Invalid
from domain.runs.gate_rules import check_gate_output
from domain.runs.usage import USAGE_REPORTED, check_usage

if TYPE_CHECKING:
    from domain.runs.events import Event

PENDING, IN_PROGRESS, PAUSED = "pending", "in_progress", "paused"
AWAITING_REVIEW, MERGING = "awaiting_review", "merging"
COMPLETED, MERGED, DECLINED = "completed", "merged", "declined"
MERGE_FAILED, FAILED, CANCELLED = "merge_failed", "failed", "cancelled"
TERMINAL = frozenset({COMPLETED, MERGED, DECLINED, MERGE_FAILED, FAILED, CANCELLED})
STATUSES = (PENDING, IN_PROGRESS, PAUSED, AWAITING_REVIEW, MERGING, *sorted(TERMINAL))

OUTPUT_TYPES = frozenset(
    {
        "agent.message",
        "agent.message.delta",
        "tool.call",
        "tool.output",
        "tool.result",
        "step.started",
        "step.completed",
        "gate.opened",
        "gate.acknowledged",
        "steering.applied",
        "usage.reported",
        "log",
    }
)


def check_output(events: list[tuple[str, Any]]) -> None:
    """Refuse a batch of runner output unless every event in it is well formed."""
    for kind, data in events:
        if kind not in OUTPUT_TYPES:
            raise Invalid(f"Unknown runner event type {kind!r}.", "events")
        if not isinstance(data, dict):
            raise Invalid("A runner event's data must be an object.", "events")
        if kind == USAGE_REPORTED:
            check_usage(data)
        check_gate_output(kind, data)


OWN_BRANCH_PREFIX = "runledger/"
DEFAULT_TARGET = "main"


def own_branch(run_id: object) -> str:
    """The branch a run's work goes on unless its runner names another: runledger/<run id>."""
    return f"{OWN_BRANCH_PREFIX}{run_id}"


def merge_target(originating_branch: str | None) -> str:
    """The branch a run merges into: the one it started from, main when none was given."""
    return originating_branch or DEFAULT_TARGET


OUTCOMES = ("changes", "no_changes", "failed")
FAILURE_CATEGORIES = ("network", "flaky-test", "runner-transient", "agent", "other")
TRANSIENT = frozenset({"network", "flaky-test", "runner-transient"})
MAX_BACKOFF_SECONDS = 300.0
# What a new run starts with besides its submission (callables make fresh lists).
INITIAL_STATE: dict[str, Any] = {
    **dict.fromkeys(
        ("result", "failure", "comment", "started_at", "ended_at", "review", "tree_hash"),
        None,
    ),
    **dict.fromkeys(("diff_stats", "branch", "merge_result", "archived_at", "lease"), None),
    "merge_started": None,
    "plan": None,
    "coordinator_status": None,
    "not_before": None,
    "attempt": 1,
    "revision": 0,
    "step_count": 0,
    "fencing_token": 0,
    "deleted": False,
    "open_gates": list,
    "conflicting_files": list,
    "gate_resolutions": list,
    "approved_tools": list,
    "directives": list,
    "usage": dict,  # model -> its totals (domain/runs/usage.py)
}


class RunState:
    """What a run's events build up (domain/runs/events.py sets it, from INITIAL_STATE on):
    declared once, for the reader and the type checker, and never assigned here. Run and the
    command mixins inherit it; a plain class, because annotations on the aggregate class
    itself would make the library turn it into a dataclass."""

    # From the submission.
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
    subtask_key: str | None  # the subtask of a coordinator's child run
    task_id: str | None  # the board task the run was started for
    created_at: datetime
    # What happened since (INITIAL_STATE gives the first values).
    status: str
    result: str | None
    failure: dict[str, str] | None
    comment: str | None
    started_at: datetime | None
    ended_at: datetime | None
    review: dict[str, Any] | None
    tree_hash: str | None
    diff_stats: dict[str, int] | None
    branch: str | None
    merge_result: str | None
    archived_at: datetime | None
    lease: dict[str, Any] | None
    merge_started: dict[str, str] | None
    not_before: str | None
    attempt: int
    revision: int
    step_count: int
    fencing_token: int
    deleted: bool
    open_gates: list[dict[str, Any]]
    conflicting_files: list[str]
    # A coordinator's (domain/runs/plan_events.py): {auto_approve_children,
    # integration_branch, subtasks: {key: subtask}}, and its status.
    plan: dict[str, Any] | None
    coordinator_status: str | None
    # Gates and steering (domain/runs/gate_events.py, gate_rules.py).
    gate_resolutions: list[dict[str, Any]]
    approved_tools: list[str]
    directives: list[dict[str, Any]]
    usage: dict[str, dict[str, Any]]  # model -> its token and cost totals

    if TYPE_CHECKING:  # given by Run (domain/runs/aggregate.py) and the library's Aggregate

        @property
        def id(self) -> UUID: ...

        @property
        def version(self) -> int: ...

        @version.setter
        def version(self, value: int) -> None: ...

        @property
        def is_claimable(self) -> bool: ...

        @property
        def is_terminal(self) -> bool: ...

        def cancel(self, *, actor: str, now: datetime, reason: str | None = None) -> None: ...

        def _trigger(
            self, event_class: Callable[..., Event], now: datetime, actor: str, **kw: Any
        ) -> None: ...

        def _check_lease(self, fencing_token: int, runner: str) -> None: ...

        def reopen_subtasks(
            self, keys: list[str] | None, comment: str | None, actor: str, now: datetime
        ) -> None: ...

        def end_plan(self, actor: str, now: datetime) -> None: ...

        def _record(self, event: Event) -> None: ...

        def _require(self, status: str, message: str) -> None: ...


def retry_delay(base: float, attempt: int) -> float:
    """Seconds before retrying after `attempt` failed: exponential, capped."""
    return min(base * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def review_record(decision: str, reviewer: str, comment: str | None, at: Any) -> dict[str, Any]:
    """The shape of a review decision in the run's state."""
    return {"decision": decision, "reviewer": reviewer, "comment": comment, "at": at}


# The statuses each review decision leads to (and that show it already took effect).
LED_TO = {
    "approved": frozenset({MERGING, MERGED, MERGE_FAILED}),
    "declined": frozenset({DECLINED}),
    "changes_requested": frozenset({IN_PROGRESS}),
}


def decision_took_effect(review: dict[str, Any] | None, status: str, decision: str) -> bool:
    """True when repeating `decision` should change nothing: it was made and stands."""
    return review is not None and review["decision"] == decision and status in LED_TO[decision]
