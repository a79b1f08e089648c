"""Random sequences of gates opened, resolved, acknowledged, auto-approval toggled and
directives sent on one Run in progress: it follows a model kept apart from the domain code,
and every history replays to the same run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.errors import Conflict, DomainError, Invalid
from domain.runs import Run

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OWNER, RUNNER = "alice", "runner-1"
KINDS = ["tool_approval", "shell_approval", "question", None]
TOOLS = ["bash", None, "edit"]
APPROVALS = ("tool_approval", "shell_approval")

Result = tuple[type[DomainError] | None, list[Run.Event]]


@dataclass
class Model:
    """What the run's gates and directives should be."""

    auto: bool
    open: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> (kind, tool)
    approved_tools: set[str] = field(default_factory=set)
    unacknowledged: set[str] = field(default_factory=set)
    unapplied: set[str] = field(default_factory=set)  # redirects and amendments
    cancelled: bool = False
    opened: int = 0

    def approves(self, kind: str, tool: str | None) -> bool:
        return kind == "tool_approval" and (self.auto or tool in self.approved_tools)


class GateStateMachine(RuleBasedStateMachine):
    """Drives the gates and steering of one claimed run, as a user and its runner might."""

    def now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def attempt(self, command: Callable[[], None]) -> Result:
        before = dict(vars(self.run))
        try:
            command()
        except DomainError as error:
            assert vars(self.run) == before, "a refused command changed the run"
            return type(error), []
        new = self.run.collect_events()
        self.events.extend(new)
        return None, new

    def auto_resolved(self, events: list[Run.Event]) -> list[str]:
        """The gates the engine approved by itself in these events; each was an open tool
        gate it approves, and is no longer open in the model."""
        ids = []
        for event in events:
            if event.wire_type() == "gate.resolved" and event.actor == "auto-approve":
                kind, tool = self.model.open.pop(event.gate_id)
                assert self.model.approves(kind, tool), (event.gate_id, kind, tool)
                assert event.decision == "approve" and event.reason in (
                    "auto_approve_tools",
                    "scope_run",
                )
                self.model.unacknowledged.add(event.gate_id)
                ids.append(event.gate_id)
        return ids

    @initialize(auto=st.booleans())
    def start(self, auto: bool) -> None:
        self.clock, self.events = START, []
        self.run = Run.submit(
            run_id=uuid4(), owner=OWNER, task="t", now=self.now(), auto_approve_tools=auto
        )
        self.run.claim(
            runner_id=RUNNER, lease_id="l1", lease_expires_at="2030-01-01T00:00:00Z", now=START
        )
        self.events.extend(self.run.collect_events())
        self.model = Model(auto=auto)

    @rule(
        gates=st.lists(
            st.tuples(st.sampled_from(KINDS), st.sampled_from(TOOLS)), min_size=1, max_size=3
        )
    )
    def open_gates(self, gates: list[tuple[str | None, str | None]]) -> None:
        batch = []
        for kind, tool in gates:
            self.model.opened += 1
            data: dict[str, Any] = {"gate_id": f"g{self.model.opened}", "tool": tool}
            if kind is not None:
                data["kind"] = kind
            batch.append(("gate.opened", data))
        result = self.attempt(
            lambda: self.run.record_output(
                fencing_token=1, events=batch, actor=RUNNER, now=self.now()
            )
        )
        if self.model.cancelled:
            assert result[0] is not None  # the lease went with the run
            return
        error, events = result
        assert error is None
        for _, data in batch:
            self.model.open[data["gate_id"]] = (data.get("kind") or "question", data["tool"])
        auto = self.auto_resolved(events)
        assert auto == [
            d["gate_id"] for _, d in batch if self.model.approves(d.get("kind") or "", d["tool"])
        ]

    @rule(
        pick=st.integers(0, 5),
        decision=st.sampled_from(["approve", "deny", "answer"]),
        answer=st.none() | st.just("yes"),
        scope=st.sampled_from(["run", "once"]),
    )
    def resolve_one(self, pick: int, decision: str, answer: str | None, scope: str) -> None:
        ids = sorted(self.model.open)
        gate_id = ids[pick % len(ids)] if ids and pick < 5 else "never-opened"
        self.resolve(gate_id, decision, answer, scope)

    def resolve(self, gate_id: str, decision: str, answer: str | None, scope: str) -> None:
        """A user resolves the gate; the run does what the model says it should."""
        error, events = self.attempt(
            lambda: self.run.resolve_gate(
                gate_id=gate_id,
                decision=decision,
                answer=answer,
                scope=scope,
                actor=OWNER,
                now=self.now(),
            )
        )
        if self.model.cancelled or gate_id not in self.model.open:
            assert error is Conflict
            return
        kind, tool = self.model.open[gate_id]
        fits = (
            decision != "answer" and answer is None
            if kind in APPROVALS
            else decision == "answer" and answer is not None
        )
        if not fits:
            assert error is Invalid
            return
        assert error is None and events[0].actor == OWNER and events[0].gate_id == gate_id
        del self.model.open[gate_id]
        self.model.unacknowledged.add(gate_id)
        if decision == "approve" and scope == "run" and kind == "tool_approval" and tool:
            self.model.approved_tools.add(tool)
        assert len(self.auto_resolved(events[1:])) == len(events) - 1

    @precondition(lambda self: any(kind == "tool_approval" for kind, _ in self.model.open.values()))
    @rule(pick=st.integers(0, 5))
    def approve_a_tool_for_the_run(self, pick: int) -> None:
        """The approval that carries over: any open tool gate, scope `run`."""
        tools = sorted(i for i, (kind, _) in self.model.open.items() if kind == "tool_approval")
        self.resolve(tools[pick % len(tools)], "approve", None, "run")

    @rule(enabled=st.booleans())
    def toggle(self, enabled: bool) -> None:
        error, events = self.attempt(
            lambda: self.run.set_auto_approve(enabled=enabled, actor=OWNER, now=self.now())
        )
        if self.model.cancelled:
            assert error is Conflict
            return
        changed = enabled != self.model.auto
        self.model.auto = enabled
        assert [e.wire_type() for e in events[:1]] == (["run.option_changed"] if changed else [])
        self.auto_resolved(events[1:])

    @rule(pick=st.integers(0, 10))
    def acknowledge(self, pick: int) -> None:
        ids = sorted(self.model.unacknowledged) or ["unknown"]
        gate_id = ids[pick % len(ids)]
        error, _ = self.attempt(
            lambda: self.run.record_output(
                fencing_token=1,
                events=[("gate.acknowledged", {"gate_id": gate_id})],
                actor=RUNNER,
                now=self.now(),
            )
        )
        if not self.model.cancelled:
            assert error is None
            self.model.unacknowledged.discard(gate_id)

    @rule(kind=st.sampled_from(["redirect", "amend", "stop"]), apply=st.booleans())
    def steer(self, kind: str, apply: bool) -> None:
        directive_id = f"d{len(self.events)}"
        error, events = self.attempt(
            lambda: self.run.steer(
                directive_id=directive_id,
                kind=kind,
                instruction="go",
                targets=[str(self.run.id)],
                actor=OWNER,
                now=self.now(),
            )
        )
        if self.model.cancelled:
            assert error is Conflict
            return
        assert error is None
        if kind == "stop":
            assert [e.wire_type() for e in events] == ["steering.directive", "run.cancelled"]
            self.model.cancelled = True
            return
        self.model.unapplied.add(directive_id)
        if apply:
            output = [("steering.applied", {"directive_id": directive_id})]
            self.attempt(
                lambda: self.run.record_output(
                    fencing_token=1, events=output, actor=RUNNER, now=self.now()
                )
            )
            self.model.unapplied.discard(directive_id)

    @invariant()
    def the_gates_follow_the_model(self) -> None:
        gates = {g["gate_id"]: (g["kind"], g["tool"]) for g in self.run.open_gates}
        assert gates == self.model.open
        assert set(self.run.approved_tools) == self.model.approved_tools
        assert {g["gate_id"] for g in self.run.unacknowledged_gates()} == self.model.unacknowledged
        assert {d["directive_id"] for d in self.run.unapplied_directives()} == self.model.unapplied
        assert self.run.auto_approve_tools == self.model.auto

    @invariant()
    def no_gate_the_run_approves_by_itself_stays_open(self) -> None:
        assert not any(self.model.approves(kind, tool) for kind, tool in self.model.open.values())

    @invariant()
    def each_gate_is_resolved_at_most_once(self) -> None:
        resolved = [e.gate_id for e in self.events if e.wire_type() == "gate.resolved"]
        assert len(resolved) == len(set(resolved))

    @invariant()
    def replaying_the_events_gives_the_live_run(self) -> None:
        replayed = None
        for event in self.events:
            replayed = event.mutate(replayed)
        assert vars(replayed) == vars(self.run)


GateStateMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGateStateMachine = GateStateMachine.TestCase
