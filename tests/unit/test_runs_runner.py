"""The Run aggregate under a runner's lease: claims, recorded output, reports, fencing tokens.

Given events, when a command, then the events appended or the error.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from eventsourcing.persistence import Mapper

from adapters.store import OrjsonTranscoder
from domain.errors import Conflict, Invalid, StaleLease
from domain.runs import (
    AWAITING_REVIEW,
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    MERGING,
    PAUSED,
    PENDING,
    Run,
)
from tests.unit.helpers import (
    ENDED,
    LATER,
    NOW,
    OWNER,
    RUNNER,
    appended,
    claim,
    given,
    output,
    report,
    review,
    submit,
)

# -- claim ----------------------------------------------------------------------------------


def test_claim_when_pending_starts_the_run_under_a_lease() -> None:
    run = given(PENDING)

    claim(run, now=LATER)

    assert run.status == IN_PROGRESS
    assert run.lease == {
        "lease_id": "lease-1",
        "runner": RUNNER,
        "runner_id": RUNNER,
        "fencing_token": 1,
        "expires_at": (LATER + timedelta(seconds=30)).isoformat(),
        "claimed_at": "2024-05-01T12:05:00.000000Z",
        "renewed_at": None,
        "confirm_by": None,  # (helpers.claim gives none)
        "confirmed": True,
        "first": True,
        "before": PENDING,
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


# -- record_output --------------------------------------------------------------------------


def test_record_output_appends_one_event_per_output_in_order() -> None:
    run = given(IN_PROGRESS)

    output(run, ("agent.message", {"text": "hi"}), ("tool.call", {}), ("log", {"line": "x"}))

    assert appended(run) == ["agent.message", "tool.call", "log"]
    assert run.status == IN_PROGRESS


def test_output_events_store_and_replay_exactly_like_library_made_events() -> None:
    # record_output makes its events without the dataclass __init__ (it is the hot path):
    # what is stored, and the run replayed from it, must not differ in any way.
    run = submit()
    claim(run)
    history = run.collect_events()
    before = run.version
    batch = [("step.started", {"n": 1}), ("gate.opened", {"gate_id": "g", "kind": "question"})]
    output(run, *batch, ("log", {"line": "x"}))
    made = run.collect_events()
    by_init = [
        Run.OutputRecorded(
            originator_id=run.id,
            originator_version=before + i + 1,
            timestamp=LATER,
            actor=RUNNER,
            kind=kind,
            data=data,
        )
        for i, (kind, data) in enumerate([*batch, ("log", {"line": "x"})])
    ]
    mapper = Mapper(transcoder=OrjsonTranscoder())

    assert [mapper.to_stored_event(e) for e in made] == [mapper.to_stored_event(e) for e in by_init]
    assert [vars(e) for e in made] == [vars(e) for e in by_init]
    replayed = None
    for event in [*history, *by_init]:
        replayed = event.mutate(replayed)
    assert vars(replayed) == vars(run)


def test_step_started_increments_the_step_count() -> None:
    run = given(IN_PROGRESS)

    output(run, ("step.started", {}), ("step.completed", {}), ("step.started", {}))

    assert run.step_count == 2
    assert appended(run) == ["step.started", "step.completed", "step.started"]


def test_gate_opened_adds_an_open_gate() -> None:
    run = given(IN_PROGRESS)

    output(run, ("gate.opened", {"gate_id": "g1", "kind": "tool_approval", "prompt": "run rm?"}))

    assert run.open_gates == [
        {
            "gate_id": "g1",
            "kind": "tool_approval",
            "prompt": "run rm?",
            "tool": None,
            "command_sha256": None,
            "opened_at": LATER,
        }
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
