"""What each event means to the rest of the engine, declared on its class: pinned here so a
change to a fact (or a new event without its facts) is a visible decision."""

from __future__ import annotations

from domain.topics import (
    CLAIMABLE_TOPICS,
    LEASE_KEEPING_TOPICS,
    TERMINAL_TYPES,
    TYPES_BY_TOPIC,
    WAKING_TOPICS,
)


def types(topics: frozenset[str]) -> set[str]:
    return {TYPES_BY_TOPIC[topic] or topic for topic in topics}


def test_a_run_is_claimable_after_it_is_submitted_retried_sent_back_or_its_claim_abandoned() -> (
    None
):
    assert types(CLAIMABLE_TOPICS) == {
        "run.submitted",
        "run.retry_scheduled",
        "review.changes_requested",
        "run.claim_abandoned",
    }


def test_a_run_ends_with_a_completion_failure_cancellation_decline_or_merge_outcome() -> None:
    assert set(TERMINAL_TYPES) == {
        "run.completed",
        "run.failed",
        "run.cancelled",
        "review.declined",
        "merge.completed",
        "merge.failed",
    }


def test_output_pauses_resumes_archiving_gates_and_steering_leave_the_lease_as_it_was() -> None:
    assert types(LEASE_KEEPING_TOPICS) == {
        "runledger:run.output",
        "run.paused",
        "run.resumed",
        "run.archived",
        "subtask.dispatched",
        "subtask.completed",
        "subtask.failed",
        "subtask.blocked",
        "subtask.cancelled",
        "subtask.retried",
        "subtask.unblocked",
        "subtask.reopened",
        "gate.resolved",
        "run.option_changed",
        "steering.directive",
        "steering.delivered",
    }


def test_each_policy_is_woken_by_the_events_it_acts_on() -> None:
    assert {policy: types(topics) for policy, topics in WAKING_TOPICS.items()} == {
        "merger": {"review.approved"},
        "lease-expiry": {"run.claimed", "lease.renewed"},
        "project-cleanup": {"project.deleted", "run.submitted"},
        # a coordinator's plan moves on when it is set or a subtask moves, and when a
        # run (maybe its child) ends or awaits review
        "coordinator": {
            "plan.set",
            "subtask.dispatched",
            "subtask.completed",
            "subtask.retried",
            "subtask.unblocked",
            "subtask.reopened",
            "run.resumed",
            "run.review_requested",
            "run.completed",
            "run.failed",
            "run.cancelled",
            "review.declined",
            "merge.completed",
            "merge.failed",
        },
        # a board has room for another run when one ends, a task moves (to ready) or
        # its settings change
        "board-pickup": {
            "backlog.task_moved",
            "backlog.settings_changed",
            "run.completed",
            "run.failed",
            "run.cancelled",
            "review.declined",
            "merge.completed",
            "merge.failed",
        },
    }


def test_no_event_both_ends_a_run_and_makes_it_claimable() -> None:
    assert not types(CLAIMABLE_TOPICS) & TERMINAL_TYPES


def test_no_event_that_ends_a_run_keeps_its_lease() -> None:
    assert not types(LEASE_KEEPING_TOPICS) & TERMINAL_TYPES


def test_board_events_are_project_events_with_no_facts_for_runs_or_other_policies() -> None:
    board = {t for t in TYPES_BY_TOPIC.values() if t.startswith("backlog.")}
    assert board == {
        "backlog.task_created",
        "backlog.task_edited",
        "backlog.task_moved",
        "backlog.task_reordered",
        "backlog.task_deleted",
        "backlog.task_started",
        "backlog.settings_changed",
    }
    facts = types(CLAIMABLE_TOPICS | LEASE_KEEPING_TOPICS) | set(TERMINAL_TYPES)
    others = {p: topics for p, topics in WAKING_TOPICS.items() if p != "board-pickup"}
    facts |= {t for topics in others.values() for t in types(topics)}
    assert not board & facts
