"""The Run aggregate's reviews: approve, decline, request changes; repeats and conflicts.

Given events, when a command, then the events appended or the error.
"""

from __future__ import annotations

import pytest

from domain.errors import Conflict
from domain.runs import (
    AWAITING_REVIEW,
    CANCELLED,
    COMPLETED,
    DECLINED,
    FAILED,
    IN_PROGRESS,
    MERGED,
    MERGING,
    PAUSED,
    PENDING,
)
from tests.unit.helpers import LATER, REVIEWER, appended, given, review

# -- review ---------------------------------------------------------------------------------


def test_approve_without_a_repository_merges_at_once() -> None:
    run = given(AWAITING_REVIEW)

    review(run, "approve", now=LATER, comment="lgtm")

    assert (run.status, run.merge_result, run.ended_at) == (MERGED, None, LATER)
    assert run.review == {
        "decision": "approved",
        "reviewer": REVIEWER,
        "comment": "lgtm",
        "at": LATER,
    }
    assert appended(run) == ["review.approved", "merge.completed"]


def test_approve_with_a_repository_waits_in_merging() -> None:
    run = given(AWAITING_REVIEW, repository_path="/srv/repo")

    review(run, "approve")

    assert run.status == MERGING
    assert not run.is_terminal
    assert appended(run) == ["review.approved"]


def test_decline_declines_the_run() -> None:
    run = given(AWAITING_REVIEW)

    review(run, "decline", now=LATER, comment="not this way")

    assert (run.status, run.ended_at) == (DECLINED, LATER)
    assert run.review["decision"] == "declined"
    assert appended(run) == ["review.declined"]


def test_request_changes_sends_the_run_back_for_another_revision() -> None:
    run = given(AWAITING_REVIEW)

    review(run, "request_changes", comment="add tests")

    assert (run.status, run.revision, run.comment, run.lease) == (
        IN_PROGRESS,
        1,
        "add tests",
        None,
    )
    assert run.review["decision"] == "changes_requested"
    assert run.is_claimable
    assert appended(run) == ["review.changes_requested"]


@pytest.mark.parametrize("status", [PENDING, IN_PROGRESS, PAUSED, COMPLETED, FAILED, CANCELLED])
@pytest.mark.parametrize("decision", ["approve", "decline", "request_changes"])
def test_review_when_not_awaiting_review_is_rejected(status: str, decision: str) -> None:
    run = given(status)

    with pytest.raises(Conflict) as error:
        review(run, decision)

    assert error.value.status == status
    assert appended(run) == []


@pytest.mark.parametrize(
    ("decision", "repository_path", "status"),
    [
        ("approve", None, MERGED),
        ("approve", "/srv/repo", MERGING),
        ("decline", None, DECLINED),
        ("request_changes", None, IN_PROGRESS),
    ],
)
def test_repeating_a_review_decision_that_took_effect_appends_nothing(
    decision: str, repository_path: str | None, status: str
) -> None:
    run = given(AWAITING_REVIEW, repository_path=repository_path)
    review(run, decision)
    run.collect_events()

    review(run, decision, now=LATER)

    assert run.status == status
    assert appended(run) == []


@pytest.mark.parametrize(
    ("first", "then"),
    [("approve", "decline"), ("decline", "approve"), ("approve", "request_changes")],
)
def test_a_different_decision_after_one_took_effect_is_a_conflict(first: str, then: str) -> None:
    run = given(AWAITING_REVIEW)
    review(run, first)
    run.collect_events()

    with pytest.raises(Conflict):
        review(run, then)

    assert appended(run) == []
