"""Random command sequences on one Run: it follows a model, keeps its invariants, and replays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.errors import Conflict, DomainError, Invalid, NotFound, StaleLease
from domain.runs import (
    AWAITING_REVIEW,
    CANCELLED,
    COMPLETED,
    DECLINED,
    FAILED,
    FAILURE_CATEGORIES,
    IN_PROGRESS,
    MERGED,
    MERGING,
    OUTCOMES,
    OUTPUT_TYPES,
    PAUSED,
    PENDING,
    STATUSES,
    TERMINAL,
    Run,
)

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OWNER, RUNNER, REVIEWER = "alice", "runner-1", "bob"
DECISIONS = ("approve", "decline", "request_changes")

REPORTED = {  # outcome -> (event, status)
    "changes": ("run.review_requested", AWAITING_REVIEW),
    "no_changes": ("run.completed", COMPLETED),
    "failed": ("run.failed", FAILED),
}
REVIEWED = {  # decision -> (event, status)
    "approve": ("review.approved", MERGING),
    "decline": ("review.declined", DECLINED),
    "request_changes": ("review.changes_requested", IN_PROGRESS),
}
# A repeated decision is a no-op while the run is still where that decision led it.
LED_TO = {"approve": {MERGING, MERGED}, "decline": {DECLINED}, "request_changes": {IN_PROGRESS}}

WITH_CHECKED_DATA = {"gate.opened", "gate.acknowledged", "steering.applied", "usage.reported"}
VALID_OUTPUTS = [
    *((kind, {}) for kind in sorted(OUTPUT_TYPES - WITH_CHECKED_DATA)),
    ("usage.reported", {"model": "m", "input_tokens": 3, "output_tokens": 2}),
    ("usage.reported", {"model": "m", "input_tokens": 1, "output_tokens": 0, "cost_usd": 0.5}),
    ("gate.opened", {"gate_id": "g1", "kind": "tool_approval", "prompt": "ok?"}),
    ("gate.opened", {"gate_id": "g2"}),
    ("gate.acknowledged", {"gate_id": "g1"}),
    ("steering.applied", {"directive_id": "d1"}),
]
INVALID_OUTPUTS = [
    ("gate.opened", {}),
    ("gate.opened", {"gate_id": 1}),
    ("gate.opened", {"gate_id": "g3", "kind": "tool"}),
    ("gate.acknowledged", {}),
    ("steering.applied", {"directive_id": 5}),
    ("usage.reported", {}),
    ("usage.reported", {"model": "m", "input_tokens": -1, "output_tokens": 0}),
    ("run.completed", {}),
]
output_batches = st.lists(st.sampled_from(VALID_OUTPUTS + INVALID_OUTPUTS), max_size=3)
valid_output_batches = st.lists(st.sampled_from(VALID_OUTPUTS), max_size=3)
# Mostly the current fencing token, sometimes an old or a future one.
token_offsets = st.sampled_from([0, 0, 0, -1, 1])

Result = tuple[type[DomainError] | None, list[str]]


@dataclass
class Model:
    """What the run should look like, kept by the test apart from the domain code."""

    repository: bool
    status: str = PENDING
    lease: int | None = None  # the fencing token of the current lease
    tokens: int = 0
    decision: str | None = None
    archived: bool = False
    deleted: bool = False

    @property
    def claimable(self) -> bool:
        return self.status == PENDING or (self.status == IN_PROGRESS and self.lease is None)

    def end(self, status: str) -> None:
        self.status, self.lease = status, None


def replay(events: list[Run.Event]) -> Run:
    """A run rebuilt from scratch out of its events."""
    run = None
    for event in events:
        run = event.mutate(run)
    assert isinstance(run, Run)
    return run


def stored_and_reloaded(events: list[Run.Event]) -> list[Run.Event]:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper: Mapper[Any] = Mapper(transcoder=transcoder)
    return [mapper.to_domain_event(mapper.to_stored_event(event)) for event in events]


class RunStateMachine(RuleBasedStateMachine):
    """Drives one Run with any command in any order, as users and runners might."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Run.Event] = []
        self.clock = START
        self.ended_in: str | None = None

    def now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def attempt(self, command: Callable[[], None]) -> Result:
        """Run a command: the error it raised (the run unchanged) or the events it appended."""
        # A shallow copy is enough: a change in place would also show up as a replay mismatch.
        before = dict(vars(self.run))
        try:
            command()
        except DomainError as error:
            assert vars(self.run) == before, "a refused command changed the run"
            return type(error), []
        new = self.run.collect_events()
        self.events.extend(new)
        return None, [event.wire_type() for event in new]

    def is_stale(self, token: int) -> bool:
        return self.model.lease is None or token != self.model.lease

    # -- rules ----------------------------------------------------------------------------

    @initialize(repository_path=st.none() | st.just("/srv/repo"))
    def submit(self, repository_path: str | None) -> None:
        self.run = Run.submit(
            run_id=uuid4(), owner=OWNER, task="t", now=self.now(), repository_path=repository_path
        )
        self.model = Model(repository=repository_path is not None)
        self.events.extend(self.run.collect_events())

    @rule()
    def claim(self) -> None:
        m = self.model
        result = self.attempt(
            lambda: self.run.claim(
                runner_id=RUNNER,
                lease_id=f"lease-{m.tokens + 1}",
                lease_expires_at=(self.clock + timedelta(seconds=30)).isoformat(),
                now=self.now(),
            )
        )
        if m.claimable:
            assert result == (None, ["run.claimed"])
            m.tokens += 1
            m.status, m.lease = IN_PROGRESS, m.tokens
        else:
            assert result == (Conflict, [])

    @rule()
    def pause(self) -> None:
        result = self.attempt(lambda: self.run.pause(actor=OWNER, now=self.now()))
        if self.model.status == IN_PROGRESS:
            assert result == (None, ["run.paused"])
            self.model.status = PAUSED
        else:
            assert result == (Conflict, [])

    @rule()
    def resume(self) -> None:
        result = self.attempt(lambda: self.run.resume(actor=OWNER, now=self.now()))
        if self.model.status == PAUSED:
            assert result == (None, ["run.resumed"])
            self.model.status = IN_PROGRESS
        else:
            assert result == (Conflict, [])

    @rule(offset=token_offsets, batch=output_batches)
    def record_output(self, offset: int, batch: list[tuple[str, dict[str, Any]]]) -> None:
        token = self.model.tokens + offset
        result = self.attempt(
            lambda: self.run.record_output(
                fencing_token=token, events=batch, actor=RUNNER, now=self.now()
            )
        )
        if self.is_stale(token):
            assert result == (StaleLease, [])
        elif any(output in INVALID_OUTPUTS for output in batch):
            assert result == (Invalid, [])
        else:
            assert result == (None, [kind for kind, _ in batch])

    @rule(
        offset=token_offsets,
        outcome=st.sampled_from([*OUTCOMES, "merged"]),
        category=st.sampled_from([*FAILURE_CATEGORIES, "cosmic-rays"]),
    )
    def report(self, offset: int, outcome: str, category: str) -> None:
        token = self.model.tokens + offset
        result = self.attempt(
            lambda: self.run.report(
                fencing_token=token,
                outcome=outcome,
                actor=RUNNER,
                now=self.now(),
                tree_hash="abc",
                diff_stats={"files": 1},
                branch="run/1",
                failure={"category": category, "message": "boom"},
            )
        )
        if self.is_stale(token):
            assert result == (StaleLease, [])
        elif outcome not in REPORTED or (outcome == "failed" and category == "cosmic-rays"):
            assert result == (Invalid, [])
        else:
            event, status = REPORTED[outcome]
            assert result == (None, [event])
            self.model.end(status)

    @rule(decision=st.sampled_from(DECISIONS))
    def review(self, decision: str) -> None:
        m = self.model
        result = self.attempt(
            lambda: self.run.decide_review(
                approved=decision == "approve",
                request_changes=decision == "request_changes",
                comment="c",
                actor=REVIEWER,
                now=self.now(),
            )
        )
        if m.status == AWAITING_REVIEW:
            event, status = REVIEWED[decision]
            if decision == "approve" and not m.repository:  # nothing to merge
                assert result == (None, [event, "merge.completed"])
                status = MERGED
            else:
                assert result == (None, [event])
            m.status, m.decision = status, decision
        elif m.decision == decision and m.status in LED_TO[decision]:
            assert result == (None, [])
        else:
            assert result == (Conflict, [])

    @rule()
    def archive(self) -> None:
        result = self.attempt(lambda: self.run.archive(actor=OWNER, now=self.now()))
        assert result == (None, [] if self.model.archived else ["run.archived"])
        self.model.archived = True

    # Random commands mostly bounce off the state machine; this rule takes the next step of
    # an ordinary life (claim, resume, output and report, review), to reach late statuses.
    @rule(
        batch=valid_output_batches,
        outcome=st.sampled_from(["changes", *OUTCOMES]),
        decision=st.sampled_from(["approve", *DECISIONS]),
    )
    def advance(self, batch: list[tuple[str, dict[str, Any]]], outcome: str, decision: str) -> None:
        m = self.model
        if m.claimable:
            self.claim()
        elif m.status == PAUSED:
            self.resume()
        elif m.lease is not None:
            self.record_output(0, batch)
            self.report(0, outcome, FAILURE_CATEGORIES[0])
        elif m.status == AWAITING_REVIEW:
            self.review(decision)

    # Cancel and delete end the run, which leaves little to explore: they share one rule,
    # and it acts one time in four (`skip` shrinks to 0, so a failing example keeps it).
    @rule(skip=st.integers(0, 3), delete=st.booleans(), reason=st.none() | st.just("enough"))
    def end(self, skip: int, delete: bool, reason: str | None) -> None:
        if skip:
            return
        if delete:
            self.delete()
        else:
            self.cancel(reason)

    def cancel(self, reason: str | None) -> None:
        result = self.attempt(lambda: self.run.cancel(actor=OWNER, now=self.now(), reason=reason))
        if self.model.status in TERMINAL or self.model.status == MERGING:
            assert result == (Conflict, [])  # a merge in progress cannot be cancelled
        else:
            assert result == (None, ["run.cancelled"])
            self.model.end(CANCELLED)

    def delete(self) -> None:
        result = self.attempt(lambda: self.run.delete(actor=OWNER, now=self.now()))
        if self.model.deleted:
            assert result == (None, [])  # deleting twice appends nothing
        elif self.model.status == MERGING:
            assert result == (Conflict, [])  # nor deleted
            return
        elif self.model.status in TERMINAL:
            assert result == (None, ["run.deleted"])
        else:
            assert result == (None, ["run.cancelled", "run.deleted"])
            self.model.end(CANCELLED)
        self.model.deleted = True

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def the_version_counts_the_events_without_gaps(self) -> None:
        assert self.run.version == len(self.events)
        versions = [event.originator_version for event in self.events]
        assert versions == list(range(1, len(self.events) + 1))
        assert self.run.pending_events == []

    @invariant()
    def the_status_is_known(self) -> None:
        assert self.run.status in STATUSES

    @invariant()
    def an_ended_run_stays_ended_without_a_lease(self) -> None:
        if self.ended_in is not None:
            assert self.run.status == self.ended_in
        elif self.run.is_terminal:
            self.ended_in = self.run.status
        if self.run.is_terminal:
            assert (self.run.lease, self.run.is_claimable) == (None, False)
            assert self.run.ended_at is not None

    @invariant()
    def the_run_follows_the_model(self) -> None:
        m, run = self.model, self.run
        assert run.status == m.status
        assert (run.lease["fencing_token"] if run.lease else None) == m.lease
        assert run.fencing_token == m.tokens
        assert (run.archived_at is not None, run.deleted) == (m.archived, m.deleted)
        if m.deleted:
            with pytest.raises(NotFound):
                run.check_visible_to(OWNER)
        else:
            run.check_visible_to(OWNER)

    @invariant()
    def the_counters_match_the_events(self) -> None:
        types = [event.wire_type() for event in self.events]
        assert self.run.step_count == types.count("step.started")
        assert len(self.run.open_gates) == types.count("gate.opened")

    @invariant()
    def replaying_the_events_gives_the_live_run(self) -> None:
        assert vars(replay(self.events)) == vars(self.run)

    def teardown(self) -> None:
        """Once per sequence (it is slower): stored and reloaded events replay the same."""
        if self.events:
            assert vars(replay(stored_and_reloaded(self.events))) == vars(self.run)


RunStateMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRunStateMachine = RunStateMachine.TestCase
