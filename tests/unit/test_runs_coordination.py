"""A coordinator run: its plan, dispatch in dependency order, ends of children, failure,
retry, assembly review, request for changes, cancel. Given events, when a command, then
the events appended or the error."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import Conflict, Invalid, StaleLease
from domain.plans import child_run_id
from domain.runs import AWAITING_REVIEW, CANCELLED, FAILED, IN_PROGRESS, MERGED, Run
from tests.unit.helpers import LATER, NOW, OWNER, RUNNER, appended, claim, given, review

PLAN = [
    {"key": "a", "title": "A", "depends_on": []},
    {"key": "b", "title": "B", "depends_on": []},
    {"key": "c", "title": "C", "depends_on": ["a", "b"]},
    {"key": "d", "title": "D", "depends_on": ["c"]},
]


def set_plan(run: Run, plan: list[dict[str, Any]] = PLAN, **kw: Any) -> None:
    run.set_plan(
        subtasks=plan,
        auto_approve_children=True,
        integration_branch=None,
        actor=kw.pop("actor", OWNER),
        now=NOW,
        **kw,
    )


def advance(run: Run, **children: str) -> None:
    """The plan moves on; `children` maps subtask keys to their child's status."""
    statuses = {run.plan["subtasks"][k]["child_run_id"]: v for k, v in children.items()}
    run.advance_plan(
        children=statuses, now=LATER, child_id=lambda key, r: child_run_id(run.id, key, r)
    )


def statuses(run: Run) -> dict[str, str]:
    return {k: s["status"] for k, s in run.plan["subtasks"].items()}


def coordinator() -> Run:
    run = given("pending")
    set_plan(run)
    run.collect_events()
    return run


def awaiting_assembly() -> Run:
    """A coordinator whose four subtasks all merged, awaiting its assembly review."""
    run = coordinator()
    advance(run)
    advance(run, a="merged", b="merged")
    advance(run, c="merged")
    advance(run, d="merged")
    run.request_assembly(tree_hash=None, diff_stats=None, now=LATER)
    return run


def test_a_plan_makes_a_pending_run_a_coordinator_that_is_never_claimed() -> None:
    run = given("pending")

    set_plan(run)

    assert appended(run) == ["plan.set"]
    assert (run.status, run.coordinator_status) == (IN_PROGRESS, "planned")
    assert statuses(run) == dict.fromkeys("abcd", "waiting")
    assert not run.is_claimable


def test_the_first_advance_dispatches_the_independent_subtasks_together() -> None:
    run = coordinator()

    advance(run)

    assert appended(run) == ["subtask.dispatched", "subtask.dispatched"]
    assert statuses(run) == {"a": "dispatched", "b": "dispatched", "c": "waiting", "d": "waiting"}
    assert run.plan["subtasks"]["a"]["child_run_id"] == str(child_run_id(run.id, "a", 1))
    assert run.coordinator_status == "dispatching"


def test_a_dependent_waits_until_all_its_dependencies_completed() -> None:
    run = coordinator()
    advance(run)
    run.collect_events()

    advance(run, a="merged", b="in_progress")
    assert appended(run) == ["subtask.completed"]
    assert statuses(run)["c"] == "waiting"

    advance(run, b="completed")
    assert appended(run) == ["subtask.completed", "subtask.dispatched"]
    assert statuses(run)["c"] == "dispatched"


def test_advancing_twice_on_the_same_facts_appends_nothing_the_second_time() -> None:
    run = coordinator()
    advance(run)
    run.collect_events()

    advance(run, a="merged")
    advance(run, a="merged")

    assert appended(run) == ["subtask.completed"]


def test_all_completed_makes_the_coordinator_ready_for_its_assembly_review() -> None:
    run = coordinator()
    advance(run)
    advance(run, a="merged", b="merged")
    advance(run, c="merged")
    advance(run, d="completed")
    run.collect_events()
    assert run.ready_for_assembly

    run.request_assembly(
        tree_hash="abc1", diff_stats={"files": 1, "added": 2, "removed": 0}, now=LATER
    )
    run.request_assembly(tree_hash="abc1", diff_stats=None, now=LATER)

    assert appended(run) == ["run.review_requested"]
    assert (run.status, run.coordinator_status) == (AWAITING_REVIEW, "awaiting_assembly")
    assert run.tree_hash == "abc1"


def test_approving_the_assembly_without_a_repository_completes_the_plan() -> None:
    run = awaiting_assembly()

    review(run, "approve")

    assert (run.status, run.coordinator_status) == (MERGED, "complete")


def test_a_failed_child_blocks_its_dependents_and_fails_the_coordinator_once_idle() -> None:
    run = coordinator()
    advance(run)
    run.collect_events()

    advance(run, b="failed")  # a still runs: the coordinator does not fail yet
    assert appended(run) == ["subtask.failed", "subtask.blocked", "subtask.blocked"]
    assert statuses(run) == {"a": "dispatched", "b": "failed", "c": "blocked", "d": "blocked"}
    assert run.status == IN_PROGRESS

    advance(run, a="merged")
    assert appended(run) == ["subtask.completed", "run.failed"]
    assert (run.status, run.coordinator_status) == (FAILED, "failed")


def test_retrying_the_failed_child_reopens_its_subtask_and_unblocks_its_dependents() -> None:
    run = coordinator()
    advance(run)
    advance(run, a="merged", b="failed")
    assert run.status == FAILED
    failed_child = run.plan["subtasks"]["b"]["child_run_id"]
    run.collect_events()

    run.retry_subtask(key="b", failed_child=failed_child, new_child="new-b", actor=OWNER, now=LATER)

    assert appended(run) == ["subtask.retried", "subtask.unblocked", "subtask.unblocked"]
    assert statuses(run) == {"a": "completed", "b": "dispatched", "c": "waiting", "d": "waiting"}
    assert (run.status, run.coordinator_status, run.ended_at) == (IN_PROGRESS, "dispatching", None)
    assert run.plan["subtasks"]["b"]["child_run_id"] == "new-b"

    advance(run, b="merged")
    assert statuses(run)["c"] == "dispatched"


def test_a_subtask_blocked_by_two_failures_stays_blocked_when_one_is_retried() -> None:
    run = coordinator()
    advance(run)
    advance(run, a="failed", b="failed")
    failed_a = run.plan["subtasks"]["a"]["child_run_id"]
    run.collect_events()

    run.retry_subtask(key="a", failed_child=failed_a, new_child="new-a", actor=OWNER, now=LATER)

    assert appended(run) == ["subtask.retried"]
    assert statuses(run)["c"] == "blocked"


def test_retrying_a_child_that_is_not_the_failed_one_is_a_conflict() -> None:
    run = coordinator()
    advance(run)
    advance(run, b="failed")

    with pytest.raises(Conflict):
        run.retry_subtask(key="b", failed_child="other", new_child="x", actor=OWNER, now=LATER)
    with pytest.raises(Conflict):
        run.retry_subtask(key="a", failed_child="x", new_child="y", actor=OWNER, now=LATER)


def test_a_plan_can_be_replaced_until_something_was_dispatched() -> None:
    run = coordinator()

    set_plan(run, PLAN[:1])
    assert list(run.plan["subtasks"]) == ["a"]

    advance(run)
    with pytest.raises(Conflict, match="dispatched"):
        set_plan(run)


def test_only_a_pending_run_gets_a_plan_from_its_owner() -> None:
    run = given("in_progress")

    with pytest.raises(Conflict):
        set_plan(run)


def test_the_runner_holding_the_lease_may_set_the_plan_which_ends_its_lease() -> None:
    run = given("in_progress")

    set_plan(run, actor=RUNNER, fencing_token=run.fencing_token)

    assert run.lease is None
    assert run.coordinator_status == "planned"


def test_a_planner_runner_with_a_stale_token_is_refused() -> None:
    run = given("in_progress")

    with pytest.raises(StaleLease):
        set_plan(run, actor=RUNNER, fencing_token=run.fencing_token + 1)


def test_an_invalid_plan_appends_nothing() -> None:
    run = given("pending")

    with pytest.raises(Invalid, match="cycle"):
        set_plan(run, [{"key": "a", "title": "A", "depends_on": ["a"]}])
    assert appended(run) == []


def test_cancelling_a_coordinator_cancels_active_subtasks_and_blocks_waiting_ones() -> None:
    run = coordinator()
    advance(run)
    run.collect_events()

    run.cancel(actor=OWNER, now=LATER)

    assert appended(run) == [
        "subtask.cancelled",
        "subtask.cancelled",
        "subtask.blocked",
        "subtask.blocked",
        "run.cancelled",
    ]
    assert (run.status, run.coordinator_status) == (CANCELLED, "cancelled")


def test_request_changes_reopens_the_named_subtasks_and_their_dependents() -> None:
    run = awaiting_assembly()
    run.collect_events()

    run.decide_review(
        approved=False,
        request_changes=True,
        comment="tighten c",
        actor="bob",
        now=LATER,
        subtasks=["c"],
    )

    assert appended(run) == ["review.changes_requested", "subtask.reopened", "subtask.reopened"]
    assert statuses(run) == {"a": "completed", "b": "completed", "c": "waiting", "d": "waiting"}
    assert run.plan["subtasks"]["c"]["round"] == 2
    assert run.plan["subtasks"]["c"]["comment"] == "tighten c"
    assert (run.status, run.coordinator_status) == (IN_PROGRESS, "dispatching")
    assert not run.is_claimable

    advance(run)
    assert run.plan["subtasks"]["c"]["child_run_id"] == str(child_run_id(run.id, "c", 2))


def test_request_changes_naming_an_unknown_subtask_is_invalid() -> None:
    run = awaiting_assembly()
    run.collect_events()

    with pytest.raises(Invalid, match="zz"):
        run.decide_review(
            approved=False,
            request_changes=True,
            comment=None,
            actor="bob",
            now=LATER,
            subtasks=["zz"],
        )


def test_subtasks_on_a_plain_runs_review_are_invalid() -> None:
    run = given(AWAITING_REVIEW)
    with pytest.raises(Invalid):
        run.decide_review(
            approved=False,
            request_changes=True,
            comment=None,
            actor="bob",
            now=LATER,
            subtasks=["a"],
        )


def test_a_child_run_knows_its_subtask_and_starts_with_its_comment() -> None:
    run = Run.submit(
        run_id=child_run_id(coordinator().id, "a", 2),
        owner=OWNER,
        task="t",
        now=NOW,
        subtask_key="a",
        comment="redo it",
    )
    claim(run)

    assert run.subtask_key == "a"
    assert run.assignment()["comment"] == "redo it"


def test_a_paused_coordinator_dispatches_nothing_until_resumed() -> None:
    run = coordinator()
    run.pause(actor=OWNER, now=LATER)
    run.collect_events()

    advance(run)
    assert appended(run) == []

    run.resume(actor=OWNER, now=LATER)
    advance(run)
    assert appended(run) == ["run.resumed", "subtask.dispatched", "subtask.dispatched"]
