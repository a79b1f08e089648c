"""Steering a Run: `stop` cancels it; `redirect` and `amend` wait for its runner, are delivered
once (claim or heartbeat) and applied when the runner says so.

Given events, when a command, then the events appended or the error.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from domain.errors import Conflict, Invalid
from domain.runs import (
    AWAITING_REVIEW,
    CANCELLED,
    IN_PROGRESS,
    MERGING,
    PAUSED,
    PENDING,
    Run,
)
from tests.unit.helpers import (
    ENDED,
    LATER,
    OWNER,
    RUNNER,
    appended,
    claim,
    given,
    output,
    report,
    submit,
)


def steer(run: Run, kind: str, instruction: str = "use the new API", **kw: Any) -> None:
    """OWNER steers the run (by default at itself), directive id `d-<kind>`."""
    kw.setdefault("targets", [str(run.id)])
    kw.setdefault("directive_id", f"d-{kind}")
    run.steer(kind=kind, instruction=instruction, actor=OWNER, now=LATER, **kw)


def heartbeat(run: Run) -> None:
    """The runner renews its lease."""
    run.renew_lease(
        lease_id=run.lease["lease_id"],
        lease_expires_at=(LATER + timedelta(seconds=30)).isoformat(),
        runner=RUNNER,
        now=LATER,
    )


def statuses(run: Run) -> list[tuple[str, str]]:
    return [(d["directive_id"], d["status"]) for d in run.directives]


# -- stop ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [PENDING, IN_PROGRESS, PAUSED, AWAITING_REVIEW])
def test_stop_cancels_the_run_with_the_instruction_as_its_reason(status: str) -> None:
    run = given(status)

    steer(run, "stop", "wrong approach")

    events = run.collect_events()
    assert [e.wire_type() for e in events] == ["steering.directive", "run.cancelled"]
    assert events[1].reason == "stopped: wrong approach"
    assert (run.status, run.lease) == (CANCELLED, None)
    assert statuses(run) == [("d-stop", "applied")]


def test_stopping_a_merging_run_is_a_conflict() -> None:
    run = given(MERGING)

    with pytest.raises(Conflict) as error:
        steer(run, "stop")

    assert error.value.status == MERGING
    assert (appended(run), run.directives) == ([], [])


@pytest.mark.parametrize("kind", ["stop", "redirect", "amend"])
@pytest.mark.parametrize("status", ENDED)
def test_steering_a_run_that_ended_is_a_conflict(kind: str, status: str) -> None:
    run = given(status)

    with pytest.raises(Conflict) as error:
        steer(run, kind)

    assert error.value.status == status
    assert appended(run) == []


@pytest.mark.parametrize(
    ("kind", "instruction", "directive_id", "field"),
    [
        ("pause", "x", "d", "kind"),
        ("redirect", "  ", "d", "instruction"),
        ("amend", "x", "", "directive_id"),
    ],
)
def test_an_unknown_kind_a_blank_instruction_or_no_id_is_invalid(
    kind: str, instruction: str, directive_id: str, field: str
) -> None:
    run = given(IN_PROGRESS)

    with pytest.raises(Invalid) as error:
        steer(run, kind, instruction, directive_id=directive_id)

    assert error.value.field == field
    assert appended(run) == []


# -- redirect and amend -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["redirect", "amend"])
def test_a_redirect_or_amendment_waits_pending_for_the_runner(kind: str) -> None:
    run = given(IN_PROGRESS)

    steer(run, kind, "also update the docs")

    assert appended(run) == ["steering.directive"]
    assert run.status == IN_PROGRESS
    assert run.directives == [
        {
            "directive_id": f"d-{kind}",
            "kind": kind,
            "instruction": "also update the docs",
            "targets": [str(run.id)],
            "status": "pending",
            "at": LATER,
        }
    ]
    assert run.unapplied_directives() == [
        {"directive_id": f"d-{kind}", "kind": kind, "instruction": "also update the docs"}
    ]


def test_a_heartbeat_delivers_pending_directives_once() -> None:
    run = given(IN_PROGRESS)
    steer(run, "redirect")
    steer(run, "amend")
    run.collect_events()

    heartbeat(run)
    first = appended(run)
    heartbeat(run)

    assert first == ["lease.renewed", "steering.delivered", "steering.delivered"]
    assert appended(run) == ["lease.renewed"]
    assert statuses(run) == [("d-redirect", "delivered"), ("d-amend", "delivered")]
    assert [d["directive_id"] for d in run.unapplied_directives()] == ["d-redirect", "d-amend"]


def test_a_claim_hands_the_runner_the_pending_directives_and_delivers_them() -> None:
    run = given(PENDING)
    steer(run, "redirect", "start from the tests")
    run.collect_events()

    claim(run)

    assert appended(run) == ["run.claimed", "steering.delivered"]
    assert run.assignment()["directives"] == [
        {"directive_id": "d-redirect", "kind": "redirect", "instruction": "start from the tests"}
    ]


def test_a_new_attempt_is_handed_directives_delivered_but_not_applied() -> None:
    run = submit(max_attempts=2)
    claim(run)
    steer(run, "amend")
    heartbeat(run)
    report(run, "failed", failure={"category": "network", "message": "gone"})
    run.collect_events()

    claim(run, now=LATER + timedelta(minutes=10))

    assert appended(run) == ["run.claimed"]  # delivered already: not recorded again
    assert [d["directive_id"] for d in run.assignment()["directives"]] == ["d-amend"]


def test_steering_applied_marks_the_directive_applied_and_the_runner_is_not_told_again() -> None:
    run = given(IN_PROGRESS)
    steer(run, "redirect")
    steer(run, "amend")
    heartbeat(run)

    output(run, ("steering.applied", {"directive_id": "d-amend"}))
    output(run, ("steering.applied", {"directive_id": "unknown"}))

    assert statuses(run) == [("d-redirect", "delivered"), ("d-amend", "applied")]
    assert [d["directive_id"] for d in run.unapplied_directives()] == ["d-redirect"]


def test_a_directive_applied_before_any_heartbeat_is_never_delivered_afterwards() -> None:
    run = given(IN_PROGRESS)
    steer(run, "redirect")
    output(run, ("steering.applied", {"directive_id": "d-redirect"}))
    run.collect_events()

    heartbeat(run)

    assert appended(run) == ["lease.renewed"]
    assert statuses(run) == [("d-redirect", "applied")]


# -- passing a directive on ---------------------------------------------------------------------


def test_a_run_that_passes_a_directive_on_records_it_as_forwarded_and_nothing_else() -> None:
    run = given(IN_PROGRESS)

    steer(run, "stop", targets=["child-1", "child-2"])

    assert appended(run) == ["steering.directive"]
    assert run.status == IN_PROGRESS
    assert statuses(run) == [("d-stop", "forwarded")]
    assert run.directives[0]["targets"] == ["child-1", "child-2"]
    assert run.unapplied_directives() == []


@pytest.mark.parametrize("status", ENDED)
def test_a_run_that_ended_passes_a_directive_on_without_recording_it(status: str) -> None:
    run = given(status)

    steer(run, "redirect", targets=["child-1"])

    assert (appended(run), run.directives) == ([], [])


def test_steering_replays_to_the_same_run() -> None:
    run = submit()
    steer(run, "redirect")
    claim(run)
    steer(run, "amend")
    heartbeat(run)
    output(run, ("steering.applied", {"directive_id": "d-redirect"}))
    steer(run, "stop")

    replayed = None
    for event in run.collect_events():
        replayed = event.mutate(replayed)

    assert vars(replayed) == vars(run)
