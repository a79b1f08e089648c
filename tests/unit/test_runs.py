"""The Run aggregate: given events, when a command, then the events appended or the error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.errors import Conflict, Invalid, NotFound, StaleLease
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
    Run,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
OWNER, RUNNER, REVIEWER = "alice", "runner-1", "bob"
ACTIVE = (PENDING, IN_PROGRESS, PAUSED, AWAITING_REVIEW, MERGING)
ENDED = (COMPLETED, FAILED, MERGED, DECLINED, CANCELLED)


# -- givens: a run brought to a status through its ordinary commands ------------------------


def submit(**options: Any) -> Run:
    return Run.submit(run_id=uuid4(), owner=OWNER, task="t", now=NOW, **options)


def claim(run: Run, now: datetime = NOW) -> None:
    run.claim(
        runner_id=RUNNER,
        lease_id=f"lease-{run.fencing_token + 1}",
        lease_expires_at=(now + timedelta(seconds=30)).isoformat(),
        now=now,
    )


def report(run: Run, outcome: str, now: datetime = NOW, **details: Any) -> None:
    run.report(fencing_token=run.fencing_token, outcome=outcome, actor=RUNNER, now=now, **details)


def review(run: Run, decision: str, now: datetime = NOW, comment: str | None = None) -> None:
    run.decide_review(
        approved=decision == "approve",
        request_changes=decision == "request_changes",
        comment=comment,
        actor=REVIEWER,
        now=now,
    )


def output(run: Run, *events: tuple[str, dict[str, Any]], token: int | None = None) -> None:
    token = run.fencing_token if token is None else token
    run.record_output(fencing_token=token, events=list(events), actor=RUNNER, now=LATER)


def given(status: str, repository_path: str | None = None) -> Run:
    """A run in `status` (MERGING gets a repository), its events already collected."""
    if status == MERGING:
        repository_path = repository_path or "/srv/repo"
    run = submit(repository_path=repository_path)
    if status != PENDING:
        claim(run)
    if status == PAUSED:
        run.pause(actor=OWNER, now=NOW)
    elif status == COMPLETED:
        report(run, "no_changes")
    elif status == FAILED:
        report(run, "failed")
    elif status == CANCELLED:
        run.cancel(actor=OWNER, now=NOW)
    elif status in (AWAITING_REVIEW, MERGING, MERGED, DECLINED):
        report(run, "changes")
        if status != AWAITING_REVIEW:
            review(run, "decline" if status == DECLINED else "approve")
    assert run.status == status
    run.collect_events()
    return run


def appended(run: Run) -> list[str]:
    """The wire types of the events the command under test appended."""
    return [event.wire_type() for event in run.collect_events()]


# -- submit ---------------------------------------------------------------------------------


def test_submit_creates_a_pending_run_with_one_submitted_event() -> None:
    run = submit()

    assert run.status == PENDING
    assert (run.owner, run.task, run.created_at) == (OWNER, "t", NOW)
    assert (run.version, run.fencing_token, run.lease) == (1, 0, None)
    assert appended(run) == ["run.submitted"]


def test_submit_records_the_options_it_is_given() -> None:
    run = submit(repository_path="/srv/repo", model="m", max_attempts=3, auto_approve_tools=True)

    assert (run.repository_path, run.model, run.max_attempts) == ("/srv/repo", "m", 3)
    assert run.auto_approve_tools is True


@pytest.mark.parametrize("task", ["", "   ", "\n"])
def test_submit_with_an_empty_task_is_invalid(task: str) -> None:
    with pytest.raises(Invalid) as error:
        Run.submit(run_id=uuid4(), owner=OWNER, task=task, now=NOW)

    assert error.value.field == "task"


@pytest.mark.parametrize("max_attempts", [-1, 0, 11, 100])
def test_submit_with_max_attempts_outside_1_to_10_is_invalid(max_attempts: int) -> None:
    with pytest.raises(Invalid) as error:
        submit(max_attempts=max_attempts)

    assert error.value.field == "max_attempts"


@pytest.mark.parametrize("max_attempts", [1, 10])
def test_submit_accepts_max_attempts_at_the_bounds(max_attempts: int) -> None:
    assert submit(max_attempts=max_attempts).max_attempts == max_attempts


# -- claim ----------------------------------------------------------------------------------


def test_claim_when_pending_starts_the_run_under_a_lease() -> None:
    run = given(PENDING)

    claim(run, now=LATER)

    assert run.status == IN_PROGRESS
    assert run.lease == {
        "lease_id": "lease-1",
        "runner_id": RUNNER,
        "fencing_token": 1,
        "expires_at": (LATER + timedelta(seconds=30)).isoformat(),
    }
    assert (run.fencing_token, run.started_at) == (1, LATER)
    assert appended(run) == ["run.claimed"]


def test_each_claim_increments_the_fencing_token_and_keeps_the_start_time() -> None:
    run = given(AWAITING_REVIEW)
    review(run, "request_changes")
    run.collect_events()

    claim(run, now=LATER)

    assert (run.fencing_token, run.lease["fencing_token"]) == (2, 2)
    assert run.started_at == NOW
    assert appended(run) == ["run.claimed"]


@pytest.mark.parametrize("status", [IN_PROGRESS, PAUSED, AWAITING_REVIEW, MERGING, *ENDED])
def test_claim_when_not_claimable_is_a_conflict(status: str) -> None:
    run = given(status)

    with pytest.raises(Conflict) as error:
        claim(run)

    assert error.value.status == status
    assert appended(run) == []


# -- pause and resume -----------------------------------------------------------------------


def test_pause_when_in_progress_pauses_the_run_and_keeps_the_lease() -> None:
    run = given(IN_PROGRESS)

    run.pause(actor=OWNER, now=LATER)

    assert run.status == PAUSED
    assert run.lease is not None
    assert appended(run) == ["run.paused"]


@pytest.mark.parametrize("status", [PENDING, PAUSED, AWAITING_REVIEW, MERGING, *ENDED])
def test_pause_when_not_in_progress_is_a_conflict(status: str) -> None:
    run = given(status)

    with pytest.raises(Conflict) as error:
        run.pause(actor=OWNER, now=LATER)

    assert error.value.status == status
    assert appended(run) == []


def test_resume_when_paused_puts_the_run_back_in_progress() -> None:
    run = given(PAUSED)

    run.resume(actor=OWNER, now=LATER)

    assert run.status == IN_PROGRESS
    assert appended(run) == ["run.resumed"]


@pytest.mark.parametrize("status", [PENDING, IN_PROGRESS, AWAITING_REVIEW, MERGING, *ENDED])
def test_resume_when_not_paused_is_a_conflict(status: str) -> None:
    run = given(status)

    with pytest.raises(Conflict) as error:
        run.resume(actor=OWNER, now=LATER)

    assert error.value.status == status
    assert appended(run) == []


# -- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ACTIVE)
def test_cancel_from_each_active_status_ends_the_run(status: str) -> None:
    run = given(status)

    run.cancel(actor=OWNER, now=LATER, reason="no longer needed")

    assert (run.status, run.ended_at, run.lease) == (CANCELLED, LATER, None)
    assert run.is_terminal
    [event] = run.collect_events()
    assert (event.wire_type(), event.reason, event.actor) == (
        "run.cancelled",
        "no longer needed",
        OWNER,
    )


@pytest.mark.parametrize("status", ENDED)
def test_cancel_when_ended_is_a_conflict(status: str) -> None:
    run = given(status)

    with pytest.raises(Conflict) as error:
        run.cancel(actor=OWNER, now=LATER)

    assert error.value.status == status
    assert appended(run) == []


# -- record_output --------------------------------------------------------------------------


def test_record_output_appends_one_event_per_output_in_order() -> None:
    run = given(IN_PROGRESS)

    output(run, ("agent.message", {"text": "hi"}), ("tool.call", {}), ("log", {"line": "x"}))

    assert appended(run) == ["agent.message", "tool.call", "log"]
    assert run.status == IN_PROGRESS


def test_step_started_increments_the_step_count() -> None:
    run = given(IN_PROGRESS)

    output(run, ("step.started", {}), ("step.completed", {}), ("step.started", {}))

    assert run.step_count == 2
    assert appended(run) == ["step.started", "step.completed", "step.started"]


def test_gate_opened_adds_an_open_gate() -> None:
    run = given(IN_PROGRESS)

    output(run, ("gate.opened", {"gate_id": "g1", "kind": "tool", "prompt": "run rm?"}))

    assert run.open_gates == [
        {"gate_id": "g1", "kind": "tool", "prompt": "run rm?", "opened_at": LATER}
    ]
    assert appended(run) == ["gate.opened"]


@pytest.mark.parametrize("data", [{}, {"gate_id": None}, {"gate_id": 7}])
def test_gate_opened_without_a_gate_id_is_invalid_and_appends_nothing(
    data: dict[str, Any],
) -> None:
    run = given(IN_PROGRESS)

    with pytest.raises(Invalid) as error:
        output(run, ("gate.opened", data))

    assert error.value.field == "events"
    assert (run.open_gates, appended(run)) == ([], [])


def test_an_unknown_output_type_is_invalid_and_appends_nothing_of_the_batch() -> None:
    run = given(IN_PROGRESS)

    with pytest.raises(Invalid) as error:
        output(run, ("step.started", {}), ("run.completed", {}))

    assert error.value.field == "events"
    assert (run.step_count, appended(run)) == (0, [])


def test_record_output_while_paused_is_accepted_under_the_lease() -> None:
    run = given(PAUSED)

    output(run, ("log", {}))

    assert appended(run) == ["log"]


@pytest.mark.parametrize("token", [0, 2, -1])
def test_record_output_with_a_wrong_fencing_token_is_a_stale_lease(token: int) -> None:
    run = given(IN_PROGRESS)

    with pytest.raises(StaleLease):
        output(run, ("log", {}), token=token)

    assert appended(run) == []


def test_record_output_with_an_old_fencing_token_is_a_stale_lease() -> None:
    run = given(AWAITING_REVIEW)
    review(run, "request_changes")
    claim(run)
    run.collect_events()

    with pytest.raises(StaleLease):
        output(run, ("log", {}), token=1)

    assert appended(run) == []


@pytest.mark.parametrize("status", [PENDING, AWAITING_REVIEW, *ENDED])
def test_record_output_without_a_lease_is_a_stale_lease(status: str) -> None:
    run = given(status)

    with pytest.raises(StaleLease):
        output(run, ("log", {}))

    assert appended(run) == []


def test_record_output_after_cancel_with_the_last_token_is_a_stale_lease() -> None:
    run = given(IN_PROGRESS)
    run.cancel(actor=OWNER, now=NOW)
    run.collect_events()

    with pytest.raises(StaleLease):
        output(run, ("log", {}), token=1)

    assert appended(run) == []


# -- report ---------------------------------------------------------------------------------


def test_report_changes_awaits_review_and_releases_the_lease() -> None:
    run = given(IN_PROGRESS)

    report(run, "changes", tree_hash="abc", diff_stats={"files": 2}, branch="run/1")

    assert (run.status, run.result, run.lease) == (AWAITING_REVIEW, "changes", None)
    assert (run.tree_hash, run.diff_stats, run.branch) == ("abc", {"files": 2}, "run/1")
    assert not run.is_terminal
    assert appended(run) == ["run.review_requested"]


def test_report_no_changes_completes_the_run() -> None:
    run = given(IN_PROGRESS)

    report(run, "no_changes", now=LATER)

    assert (run.status, run.result, run.ended_at, run.lease) == (
        COMPLETED,
        "no_changes",
        LATER,
        None,
    )
    assert appended(run) == ["run.completed"]


def test_report_failed_fails_the_run_with_the_category_and_message() -> None:
    run = given(IN_PROGRESS)

    report(run, "failed", now=LATER, failure={"category": "network", "message": "timed out"})

    assert (run.status, run.result, run.ended_at) == (FAILED, "failed", LATER)
    assert run.failure == {"category": "network", "message": "timed out"}
    assert appended(run) == ["run.failed"]


def test_report_failed_without_details_is_an_other_failure() -> None:
    run = given(IN_PROGRESS)

    report(run, "failed")

    assert run.failure["category"] == "other"
    assert appended(run) == ["run.failed"]


def test_report_failed_with_an_unknown_category_is_invalid() -> None:
    run = given(IN_PROGRESS)

    with pytest.raises(Invalid) as error:
        report(run, "failed", failure={"category": "cosmic-rays", "message": "?"})

    assert error.value.field == "failure"
    assert (run.status, appended(run)) == (IN_PROGRESS, [])


def test_report_an_unknown_outcome_is_invalid() -> None:
    run = given(IN_PROGRESS)

    with pytest.raises(Invalid) as error:
        report(run, "merged")

    assert error.value.field == "outcome"
    assert (run.status, appended(run)) == (IN_PROGRESS, [])


@pytest.mark.parametrize("token", [0, 2])
def test_report_with_a_wrong_fencing_token_is_a_stale_lease(token: int) -> None:
    run = given(IN_PROGRESS)

    with pytest.raises(StaleLease):
        run.report(fencing_token=token, outcome="no_changes", actor=RUNNER, now=LATER)

    assert (run.status, appended(run)) == (IN_PROGRESS, [])


def test_report_with_an_old_fencing_token_is_a_stale_lease() -> None:
    run = given(AWAITING_REVIEW)
    review(run, "request_changes")
    claim(run)
    run.collect_events()

    with pytest.raises(StaleLease):
        run.report(fencing_token=1, outcome="no_changes", actor=RUNNER, now=LATER)

    assert (run.status, appended(run)) == (IN_PROGRESS, [])


def test_report_after_cancel_is_a_stale_lease() -> None:
    run = given(IN_PROGRESS)
    run.cancel(actor=OWNER, now=NOW)
    run.collect_events()

    with pytest.raises(StaleLease):
        run.report(fencing_token=1, outcome="changes", actor=RUNNER, now=LATER)

    assert (run.status, appended(run)) == (CANCELLED, [])


def test_a_second_report_under_the_same_lease_is_a_stale_lease() -> None:
    run = given(AWAITING_REVIEW)

    with pytest.raises(StaleLease):
        run.report(fencing_token=1, outcome="no_changes", actor=RUNNER, now=LATER)

    assert (run.status, appended(run)) == (AWAITING_REVIEW, [])


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


# -- archive --------------------------------------------------------------------------------


def test_archive_records_when_and_keeps_the_status() -> None:
    run = given(COMPLETED)

    run.archive(actor=OWNER, now=LATER)

    assert (run.archived_at, run.status) == (LATER, COMPLETED)
    assert appended(run) == ["run.archived"]


def test_archive_twice_appends_once() -> None:
    run = given(COMPLETED)

    run.archive(actor=OWNER, now=NOW)
    run.archive(actor=OWNER, now=LATER)

    assert run.archived_at == NOW
    assert appended(run) == ["run.archived"]


# -- delete and visibility ------------------------------------------------------------------


@pytest.mark.parametrize("status", ACTIVE)
def test_delete_of_an_active_run_cancels_it_first(status: str) -> None:
    run = given(status)

    run.delete(actor=OWNER, now=LATER)

    assert (run.status, run.deleted) == (CANCELLED, True)
    cancelled, deleted = run.collect_events()
    assert (cancelled.wire_type(), cancelled.reason) == ("run.cancelled", "deleted")
    assert deleted.wire_type() == "run.deleted"


@pytest.mark.parametrize("status", ENDED)
def test_delete_of_an_ended_run_only_deletes_it(status: str) -> None:
    run = given(status)

    run.delete(actor=OWNER, now=LATER)

    assert (run.status, run.deleted) == (status, True)
    assert appended(run) == ["run.deleted"]


def test_a_run_is_visible_to_its_owner() -> None:
    given(PENDING).check_visible_to(OWNER)


def test_a_run_is_not_found_by_another_user() -> None:
    with pytest.raises(NotFound):
        given(PENDING).check_visible_to("mallory")


def test_a_deleted_run_is_not_found_even_by_its_owner() -> None:
    run = given(IN_PROGRESS)
    run.delete(actor=OWNER, now=LATER)

    with pytest.raises(NotFound):
        run.check_visible_to(OWNER)
    assert not run.is_claimable
