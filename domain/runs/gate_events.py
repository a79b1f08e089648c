"""The Run's events of human gates and steering: a gate resolved, an option changed, a
directive issued and delivered. Attributes of `Run` too (domain/runs/aggregate.py).

None of them touches the lease (`KEEPS_LEASE`): a run waiting on a gate or being steered
keeps its runner; a `stop` ends the run with its own `run.cancelled`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.runs.events import Event
from domain.runs.gate_rules import (
    APPLIED,
    APPROVE,
    DELIVERED,
    FORWARDED,
    PENDING,
    STOP,
    TOOL_APPROVAL,
    WHOLE_RUN,
    set_directive_status,
)

if TYPE_CHECKING:
    from domain.runs.aggregate import Run


class GateResolved(Event):
    """A gate's answer, by a user or (actor `auto-approve`, with its `reason`) the engine."""

    TYPE = "gate.resolved"
    KEEPS_LEASE = True
    gate_id: str
    decision: str
    answer: str | None
    scope: str
    tool: str | None
    reason: str | None

    def apply(self, run: Run) -> None:
        kinds = {g["kind"] for g in run.open_gates if g["gate_id"] == self.gate_id}
        run.open_gates = [g for g in run.open_gates if g["gate_id"] != self.gate_id]
        resolution = {
            "gate_id": self.gate_id,
            "decision": self.decision,
            "answer": self.answer,
            "scope": self.scope,
            "acknowledged": False,
        }
        others = [r for r in run.gate_resolutions if r["gate_id"] != self.gate_id]
        run.gate_resolutions = [*others, resolution]
        tool = self.tool
        whole_run = self.decision == APPROVE and self.scope == WHOLE_RUN and TOOL_APPROVAL in kinds
        if whole_run and tool is not None and tool not in run.approved_tools:
            run.approved_tools = [*run.approved_tools, tool]


class OptionChanged(Event):
    """A run's option changed while it runs (today: `auto_approve_tools`)."""

    TYPE = "run.option_changed"
    KEEPS_LEASE = True
    auto_approve_tools: bool

    def apply(self, run: Run) -> None:
        run.auto_approve_tools = self.auto_approve_tools


class DirectiveIssued(Event):
    """A steering directive, recorded on the run it was sent to and on each of its targets.

    On a target, a `stop` is applied at once (its `run.cancelled` follows); a `redirect` or
    an `amend` waits, pending, for the runner. On a run that only passed it on, it is
    `forwarded`."""

    TYPE = "steering.directive"
    KEEPS_LEASE = True
    directive_id: str
    kind: str
    instruction: str
    targets: list[str]

    def apply(self, run: Run) -> None:
        if str(run.id) not in self.targets:
            status = FORWARDED
        else:
            status = APPLIED if self.kind == STOP else PENDING
        directive = {
            "directive_id": self.directive_id,
            "kind": self.kind,
            "instruction": self.instruction,
            "targets": list(self.targets),
            "status": status,
            "at": self.timestamp,
        }
        run.directives = [*run.directives, directive]


class DirectiveDelivered(Event):
    """A runner was handed a pending directive (in its claim or a heartbeat answer)."""

    TYPE = "steering.delivered"
    KEEPS_LEASE = True
    directive_id: str

    def apply(self, run: Run) -> None:
        set_directive_status(run, self.directive_id, DELIVERED, {PENDING})
