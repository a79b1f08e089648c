"""A claim its runner never confirms goes back (domain/runs/attempts.py `abandon_claim`):
at once when its client is known to be gone, else once its confirm time passed; never
once the runner spoke under it (an event, a heartbeat), and never using an attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import StaleLease
from domain.runs import IN_PROGRESS, PAUSED, PENDING, Run
from tests.unit.helpers import NOW, OWNER, RUNNER, appended, claim, output, review, submit

CONFIRM = 10.0
DUE = NOW + timedelta(seconds=CONFIRM)


def claimed(confirm_within: float | None = CONFIRM) -> Run:
    """A submitted run just claimed, its events collected."""
    run = submit()
    claim(run, confirm_within=confirm_within)
    run.collect_events()
    return run


def abandon(run: Run, now: object = DUE, client_gone: bool = False) -> None:
    run.abandon_claim(fencing_token=run.fencing_token, now=now, client_gone=client_gone)


def test_an_unconfirmed_claim_past_its_confirm_time_is_abandoned_without_using_an_attempt() -> None:
    run = claimed()
    attempt = run.attempt

    abandon(run)

    assert appended(run) == ["run.claim_abandoned"]
    assert (run.status, run.lease, run.attempt, run.started_at) == (PENDING, None, attempt, None)
    assert run.is_claimable


def test_the_abandonment_names_the_lease_the_runner_and_why() -> None:
    run = claimed()
    lease = run.lease
    assert lease is not None

    abandon(run)

    (event,) = run.collect_events()
    assert (event.lease_id, event.fencing_token, event.runner, event.runner_id, event.reason) == (
        lease["lease_id"],
        1,
        RUNNER,
        RUNNER,
        "not_confirmed",
    )


def test_before_its_confirm_time_a_claim_stays_unless_its_client_is_gone() -> None:
    run = claimed()

    abandon(run, now=DUE - timedelta(seconds=1))
    assert appended(run) == []

    abandon(run, now=NOW, client_gone=True)
    (event,) = run.collect_events()
    assert (event.reason, run.status) == ("client_disconnected", PENDING)


@pytest.mark.parametrize("speaks", ["output", "heartbeat"])
def test_a_claim_whose_runner_spoke_is_never_abandoned(speaks: str) -> None:
    run = claimed()
    if speaks == "output":
        output(run, ("log", {"message": "starting"}))
    else:
        assert run.lease is not None
        run.renew_lease(
            lease_id=run.lease["lease_id"],
            lease_expires_at=(NOW + timedelta(seconds=60)).isoformat(),
            runner=RUNNER,
            now=NOW,
        )
    run.collect_events()

    abandon(run, client_gone=True)
    abandon(run, now=DUE + timedelta(hours=1))

    assert appended(run) == [] and run.status == IN_PROGRESS


def test_a_claim_made_before_confirmation_existed_is_never_abandoned() -> None:
    run = claimed(confirm_within=None)

    abandon(run, now=DUE + timedelta(hours=1), client_gone=True)

    assert appended(run) == []


def test_another_leases_token_changes_nothing() -> None:
    run = claimed()

    run.abandon_claim(fencing_token=run.fencing_token - 1, now=DUE, client_gone=True)

    assert appended(run) == [] and run.lease is not None


def test_abandoning_twice_records_it_once() -> None:
    run = claimed()

    abandon(run)
    abandon(run)

    assert appended(run) == ["run.claim_abandoned"]


def test_the_abandoned_runner_is_refused_from_then_on() -> None:
    run = claimed()
    token = run.fencing_token
    abandon(run)

    with pytest.raises(StaleLease):
        run.record_output(fencing_token=token, events=[("log", {})], actor=RUNNER, now=DUE)


def test_the_next_claim_gets_the_next_token_and_starts_the_run_then() -> None:
    run = claimed()
    abandon(run)
    later = DUE + timedelta(seconds=5)

    claim(run, now=later, confirm_within=CONFIRM)

    assert (run.fencing_token, run.started_at, run.attempt) == (2, later, 1)


def test_a_run_sent_back_for_changes_is_in_progress_again_without_a_lease() -> None:
    run = claimed()
    output(run, ("log", {"message": "worked"}))
    run.report(fencing_token=1, outcome="changes", actor=RUNNER, now=NOW)
    review(run, "request_changes", comment="again")
    claim(run, now=NOW, confirm_within=CONFIRM)
    started = run.started_at
    run.collect_events()

    abandon(run)

    assert (run.status, run.lease, run.started_at) == (IN_PROGRESS, None, started)
    assert run.is_claimable


def test_a_run_paused_meanwhile_stays_paused_and_is_claimable_once_resumed() -> None:
    run = claimed()
    run.pause(actor=OWNER, now=NOW)
    run.collect_events()

    abandon(run)

    assert (run.status, run.lease) == (PAUSED, None)
    assert not run.is_claimable
    run.resume(actor=OWNER, now=DUE)
    assert run.is_claimable
