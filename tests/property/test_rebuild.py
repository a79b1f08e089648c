"""Rebuilding the runs view from the whole log gives exactly the live, incrementally built one."""

from __future__ import annotations

import tempfile
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import readmodels
from api.config import Config
from api.service.runtime import Runtime
from domain.errors import DomainError
from domain.runs import (
    AWAITING_REVIEW,
    FAILURE_CATEGORIES,
    IN_PROGRESS,
    MERGING,
    OUTCOMES,
    PAUSED,
)
from projections.runs import run_view
from tests.support import postgres_schema

OWNER, RUNNER = "alice", "runner-1"
MAX_RUNS = 4

run_index = st.integers(0, MAX_RUNS - 1)
outputs = st.lists(
    st.sampled_from(
        [
            ("log", {"line": "héllo ✓"}),
            ("step.started", {}),
            ("gate.opened", {"kind": "tool_approval", "prompt": "ok?"}),
            ("gate.opened", {"gate_id": "t", "kind": "tool_approval", "tool": "bash"}),
            ("gate.opened", {"kind": "question", "prompt": "which?"}),
            ("gate.acknowledged", {"gate_id": "t"}),
            ("steering.applied", {"directive_id": "d"}),
            ("tool.output", {"_type_": "x", "_data_": 1}),
        ]
    ),
    min_size=1,
    max_size=3,
)
submits = st.tuples(st.just("submit"), st.booleans(), st.booleans(), st.integers(1, 3))
# Any command on any run: most are refused in most states, which must append nothing.
anything = st.one_of(
    submits,
    st.tuples(st.just("claim"), run_index),
    st.tuples(st.just("output"), run_index, outputs, st.sampled_from([0, 0, -1])),
    st.tuples(st.just("pause"), run_index),
    st.tuples(st.just("resume"), run_index),
    st.tuples(st.just("cancel"), run_index),
    st.tuples(
        st.just("report"),
        run_index,
        st.sampled_from(OUTCOMES),
        st.sampled_from(FAILURE_CATEGORIES),
    ),
    st.tuples(st.just("review"), run_index, st.sampled_from(["approve", "decline", "changes"])),
    st.tuples(st.just("merge"), run_index, st.sampled_from(["complete", "fail", "refuse"])),
    st.tuples(st.just("renew"), run_index),
    st.tuples(st.just("expire"), run_index),
    st.tuples(st.just("archive"), run_index),
    st.tuples(st.just("resolve"), run_index, st.integers(0, 3)),
    st.tuples(st.just("auto_approve"), run_index, st.booleans()),
    st.tuples(st.just("steer"), run_index, st.sampled_from(["stop", "redirect", "amend"])),
    st.tuples(st.just("delete"), run_index),
    st.tuples(st.just("catch_up")),
)
# A step a run's status allows, so that histories get past `pending`.
steps = st.tuples(st.just("step"), run_index, st.integers(0, 7))


@st.composite
def commands(draw: st.DrawFn) -> tuple[Any, ...]:
    """Three commands in four are steps (`one_of` would flatten `anything` and dilute them)."""
    return draw(anything if draw(st.integers(0, 3)) == 0 else steps)


histories = st.builds(
    lambda first, rest: first + rest,
    st.lists(submits, min_size=1, max_size=MAX_RUNS),
    st.lists(commands(), min_size=10, max_size=40),
)


@dataclass
class Driver:
    """Plays commands against one runtime, remembering each run's latest lease."""

    runtime: Runtime
    runs: list[UUID] = field(default_factory=list)
    leases: dict[UUID, tuple[str, int]] = field(default_factory=dict)

    def play(self, command: tuple[Any, ...]) -> None:
        """Run one command; a refused command (a domain error) appends nothing."""
        name, *args = command
        if name == "submit":
            self.submit(*args)
        elif name == "catch_up":
            self.runtime.projection.catch_up()
        elif self.runs:
            run_id, head = self.runs[args[0] % len(self.runs)], self.runtime.db.head()
            try:
                getattr(self, name)(run_id, *args[1:])
            except DomainError:
                assert self.runtime.db.head() == head

    def step(self, run_id: UUID, choice: int) -> None:
        """Take one of the steps the run's current status allows."""
        run = self.runtime.engine.get_run(run_id)
        if run.is_claimable:
            self.claim(run_id)
        elif run.status == IN_PROGRESS:
            self.working(run_id, choice)
        elif run.status == PAUSED:
            (self.resume, self.resume, self.cancel)[choice % 3](run_id)
        elif run.status == AWAITING_REVIEW:
            self.review(run_id, ("approve", "decline", "changes")[choice % 3])
        elif run.status == MERGING:
            self.merge(run_id, ("complete", "fail", "refuse")[choice % 3])
        else:
            (self.archive, self.delete)[choice % 2](run_id)

    def working(self, run_id: UUID, choice: int) -> None:
        """A claimed run: output, pause, a report, or a lapsed lease."""
        if choice < 2:
            self.output(run_id, [("log", {"n": choice}), ("step.started", {})], 0)
        elif choice == 2:
            self.pause(run_id)
        elif choice < 5:
            self.report(run_id, "changes", "other")
        elif choice == 5:
            self.report(run_id, "no_changes", "other")
        elif choice == 6:
            self.report(run_id, "failed", "network")
        else:
            self.expire(run_id)

    def submit(self, in_repository: bool, child: bool, attempts: int) -> None:
        parent = str(self.runs[-1]) if child and self.runs else None
        repository = "/srv/repo" if in_repository else None
        appended = self.runtime.engine.submit_run(
            OWNER,
            f"task {len(self.runs)}",
            repository_path=repository,
            parent_run_id=parent,
            max_attempts=attempts,
        )
        self.runs.append(appended.run_id)

    def claim(self, run_id: UUID) -> None:
        _, lease = self.runtime.engine.claim_run(run_id, RUNNER)
        self.leases[run_id] = (lease.lease_id, lease.fencing_token)

    def token(self, run_id: UUID) -> int:
        return self.leases.get(run_id, ("", 0))[1]

    def output(self, run_id: UUID, events: list[tuple[str, dict]], offset: int) -> None:
        token = self.token(run_id) + offset
        self.runtime.engine.record_output(run_id, RUNNER, token, events)

    def pause(self, run_id: UUID) -> None:
        self.runtime.engine.pause_run(run_id, OWNER)

    def resume(self, run_id: UUID) -> None:
        self.runtime.engine.resume_run(run_id, OWNER)

    def cancel(self, run_id: UUID) -> None:
        self.runtime.engine.cancel_run(run_id, OWNER, reason="enough")

    def report(self, run_id: UUID, outcome: str, category: str) -> None:
        failure = {"category": category, "message": "it broke"}
        self.runtime.engine.report_outcome(
            run_id, RUNNER, self.token(run_id), outcome, tree_hash="abc", failure=failure
        )

    def review(self, run_id: UUID, decision: str) -> None:
        self.runtime.engine.review_run(
            run_id,
            OWNER,
            approved=decision == "approve",
            request_changes=decision == "changes",
            comment=decision,
        )

    def merge(self, run_id: UUID, how: str) -> None:
        engine = self.runtime.engine
        with suppress(DomainError):  # what the merge policy records before it moves a ref
            engine.start_merge(run_id, "main", "a" * 40, "b" * 40, "c" * 40)
        if how == "complete":
            engine.complete_merge(run_id, "c0ffee")
        elif how == "fail":
            engine.fail_merge(run_id, "conflicts", ["README.md"])
        else:
            engine.refuse_merge(run_id, "dirty checkout")

    def renew(self, run_id: UUID) -> None:
        self.runtime.engine.heartbeat(run_id, self.leases.get(run_id, ("none", 0))[0], RUNNER)

    def expire(self, run_id: UUID) -> None:
        self.runtime.engine.expire_lease(run_id, self.token(run_id))

    def resolve(self, run_id: UUID, choice: int) -> None:
        """Resolve the run's first open gate (a conflict when none is open)."""
        gates = self.runtime.engine.get_run(run_id).open_gates
        gate = gates[0] if gates else {"gate_id": "none", "kind": "question"}
        question = gate["kind"] == "question"
        self.runtime.engine.resolve_gate(
            run_id,
            OWNER,
            gate["gate_id"],
            decision="answer" if question else ("approve", "deny")[choice % 2],
            answer="yes" if question else None,
            scope=("once", "run")[choice // 2],
        )

    def auto_approve(self, run_id: UUID, enabled: bool) -> None:
        self.runtime.engine.set_auto_approve(run_id, OWNER, enabled=enabled)

    def steer(self, run_id: UUID, kind: str) -> None:
        self.runtime.engine.steer_run(
            run_id, OWNER, directive_id="d", kind=kind, instruction="go", targets=[str(run_id)]
        )

    def archive(self, run_id: UUID) -> None:
        self.runtime.engine.archive_run(run_id, OWNER)

    def delete(self, run_id: UUID) -> None:
        self.runtime.engine.delete_run(run_id, OWNER)


def runs_view(runtime: Runtime) -> list[tuple[Any, ...]]:
    """Every row of the runs view, exactly as stored."""
    with runtime.db.reading() as cur:
        return readmodels.all_runs(cur)


def check_rebuild_equals_live(url: str, history: list[tuple[Any, ...]]) -> None:
    """Play the history (catching up now and then), then rebuild: the rows must not change."""
    with tempfile.TemporaryDirectory() as data_dir:
        # No backoff and instant lease expiry, so retries and expiries are reachable.
        config = Config(url, Path(data_dir), lease_seconds=0.0, retry_backoff=0.0)
        runtime = Runtime(config)
        try:
            driver = Driver(runtime)
            for command in history:
                driver.play(command)
            head = runtime.projection.catch_up()
            live = runs_view(runtime)

            assert runtime.projection.rebuild() == head == runtime.db.head()
            assert runs_view(runtime) == live
            docs = {row[0]: orjson.loads(row[-1]) for row in live}
            expected = {
                str(run.id): run_view(run)
                for run in map(runtime.engine.get_run, driver.runs)
                if not run.deleted
            }
            assert docs == expected
        finally:
            runtime.close()


@settings(max_examples=25, deadline=None)
@given(history=histories)
def test_on_sqlite_the_rebuilt_runs_view_equals_the_live_one(history: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        check_rebuild_equals_live(f"sqlite:///{Path(directory) / 'events.db'}", history)


@pytest.mark.postgres
@settings(max_examples=12, deadline=None)
@given(history=histories)
def test_on_postgres_the_rebuilt_runs_view_equals_the_live_one(history: list[tuple]) -> None:
    with postgres_schema() as url:
        check_rebuild_equals_live(url, history)
