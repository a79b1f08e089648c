"""The Run aggregate's lifecycle: submit, pause and resume, cancel, archive, delete, visibility.

Given events, when a command, then the events appended or the error.
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import Conflict, Invalid, NotFound
from domain.runs import (
    AWAITING_REVIEW,
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    MERGING,
    PAUSED,
    PENDING,
    Run,
)
from tests.unit.helpers import ACTIVE, ENDED, LATER, NOW, OWNER, appended, given, submit

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


CANCELLABLE = tuple(status for status in ACTIVE if status != MERGING)


@pytest.mark.parametrize("status", CANCELLABLE)
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


def test_cancel_or_delete_while_merging_is_rejected_so_a_merge_is_never_undone() -> None:
    run = given(MERGING)

    with pytest.raises(Conflict) as cancel:
        run.cancel(actor=OWNER, now=LATER)
    with pytest.raises(Conflict) as delete:
        run.delete(actor=OWNER, now=LATER)

    assert cancel.value.status == delete.value.status == MERGING
    assert run.collect_events() == []


@pytest.mark.parametrize("status", CANCELLABLE)
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
