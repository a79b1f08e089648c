"""Givens for the Run aggregate's unit tests: a run brought to a status by its own commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

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
from domain.timestamps import format_timestamp

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
OWNER, RUNNER, REVIEWER = "alice", "runner-1", "bob"
ACTIVE = (PENDING, IN_PROGRESS, PAUSED, AWAITING_REVIEW, MERGING)
ENDED = (COMPLETED, FAILED, MERGED, DECLINED, CANCELLED)


def submit(**options: Any) -> Run:
    """A new pending run of OWNER's, with these options."""
    return Run.submit(run_id=uuid4(), owner=OWNER, task="t", now=NOW, **options)


def claim(run: Run, now: datetime = NOW, confirm_within: float | None = None) -> None:
    """The runner claims the run under the next lease (to be confirmed within
    `confirm_within` seconds, if given)."""
    confirm_by = None
    if confirm_within is not None:
        confirm_by = format_timestamp(now + timedelta(seconds=confirm_within))
    run.claim(
        runner_id=RUNNER,
        lease_id=f"lease-{run.fencing_token + 1}",
        lease_expires_at=(now + timedelta(seconds=30)).isoformat(),
        now=now,
        confirm_by=confirm_by,
    )


def report(run: Run, outcome: str, now: datetime = NOW, **details: Any) -> None:
    """The runner reports an outcome under the current lease."""
    run.report(fencing_token=run.fencing_token, outcome=outcome, actor=RUNNER, now=now, **details)


def review(run: Run, decision: str, now: datetime = NOW, comment: str | None = None) -> None:
    """REVIEWER decides: approve, decline or request_changes."""
    run.decide_review(
        approved=decision == "approve",
        request_changes=decision == "request_changes",
        comment=comment,
        actor=REVIEWER,
        now=now,
    )


def output(run: Run, *events: tuple[str, dict[str, Any]], token: int | None = None) -> None:
    """The runner records output events under `token` (the current one by default)."""
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
