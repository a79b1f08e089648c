"""Human gates on a run: a runner opens one (runner output `gate.opened`), a user resolves
it once, and the engine approves tool gates by itself where the run allows it. Mixed into
`Run` (domain/runs/aggregate.py) ahead of the attempt commands, whose `record_output` it
extends: a tool gate that may be auto-approved is resolved in the batch that opened it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.errors import Conflict, Invalid
from domain.runs.gate_events import GateResolved, OptionChanged
from domain.runs.gate_rules import (
    ANSWER,
    APPROVE,
    AUTO_APPROVER,
    DECISIONS,
    ONCE,
    SCOPES,
    SHELL_APPROVAL,
    TOOL_APPROVAL,
    WHOLE_RUN,
    auto_approval,
)
from domain.runs.states import RunState


class GateCommands(RunState):
    """The Run's commands on gates: resolve one, toggle auto-approval; auto-resolution."""

    def record_output(
        self,
        *,
        fencing_token: int,
        events: list[tuple[str, dict[str, Any]]],
        actor: str,
        now: datetime,
    ) -> None:
        """Append the runner's output (domain/runs/attempts.py), then resolve, in the same
        batch, each tool gate it opened that the run approves by itself."""
        super().record_output(  # type: ignore[misc]
            fencing_token=fencing_token, events=events, actor=actor, now=now
        )
        opened = {data["gate_id"] for kind, data in events if kind == "gate.opened"}
        if opened:
            self._auto_resolve(now, lambda gate: gate["gate_id"] in opened)

    def resolve_gate(
        self,
        *,
        gate_id: str,
        decision: str,
        answer: str | None,
        scope: str,
        actor: str,
        now: datetime,
    ) -> None:
        """Resolve an open gate once: approve or deny an approval, answer a question.

        An approval of a tool with scope `run` also approves the tool's other open gates,
        and every later one, on this run.
        """
        if self.is_terminal:
            raise Conflict("The run has ended; its gates cannot be resolved.", self.status)
        gate = next((g for g in self.open_gates if g["gate_id"] == gate_id), None)
        if gate is None:
            raise Conflict(f"The run has no open gate {gate_id!r}.", self.status)
        if decision not in DECISIONS:
            raise Invalid(f"decision is one of {', '.join(DECISIONS)}.", "decision")
        if scope not in SCOPES:
            raise Invalid(f"scope is one of {', '.join(SCOPES)}.", "scope")
        if gate["kind"] in (TOOL_APPROVAL, SHELL_APPROVAL):
            if decision == ANSWER:
                raise Invalid("An approval gate is approved or denied, not answered.", "decision")
            if answer is not None:
                raise Invalid("Only a question gate takes an answer.", "answer")
        else:  # a question (or a gate recorded before kinds were checked)
            if decision != ANSWER:
                raise Invalid("A question gate is resolved with decision 'answer'.", "decision")
            if not isinstance(answer, str):
                raise Invalid("A question gate needs an answer.", "answer")
        self._trigger(
            GateResolved,
            now,
            actor,
            gate_id=gate_id,
            decision=decision,
            answer=answer,
            scope=scope,
            tool=gate["tool"],
            reason=None,
        )
        if decision == APPROVE and scope == WHOLE_RUN and gate["kind"] == TOOL_APPROVAL:
            self._auto_resolve(now, lambda other: other["tool"] == gate["tool"])

    def set_auto_approve(self, *, enabled: bool, actor: str, now: datetime) -> None:
        """Turn `auto_approve_tools` on or off while the run has not ended (a repeat changes
        nothing); turning it on approves the tool gates open now."""
        if self.is_terminal:
            raise Conflict("The run has ended; its options cannot change.", self.status)
        if self.auto_approve_tools == enabled:
            return
        self._trigger(OptionChanged, now, actor, auto_approve_tools=enabled)
        self._auto_resolve(now, lambda gate: True)

    def unacknowledged_gates(self) -> list[dict[str, Any]]:
        """The resolutions the runner has not acknowledged (`gate.acknowledged`) yet."""
        return [
            {k: r[k] for k in ("gate_id", "decision", "answer", "scope")}
            for r in self.gate_resolutions
            if not r["acknowledged"]
        ]

    def _auto_resolve(self, now: datetime, among: Callable[[dict[str, Any]], bool]) -> None:
        """Approve each open gate `among` selects that the run approves by itself."""
        done: set[str] = set()
        for gate in list(self.open_gates):
            reason = auto_approval(self, gate) if among(gate) else None
            if reason is None or gate["gate_id"] in done:
                continue
            done.add(gate["gate_id"])
            self._trigger(
                GateResolved,
                now,
                AUTO_APPROVER,
                gate_id=gate["gate_id"],
                decision=APPROVE,
                answer=None,
                scope=ONCE,
                tool=gate["tool"],
                reason=reason,
            )
