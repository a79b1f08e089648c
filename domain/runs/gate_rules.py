"""The vocabulary of gates and steering, the checks of their runner output, and what that
output does to a run's state (domain/runs/events.py `OutputRecorded` applies it from here).

Pure: no events are defined here (domain/runs/gate_events.py has them), so the run's events
module can import this one without a cycle.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.errors import Invalid
from domain.runs.usage import apply_usage

if TYPE_CHECKING:
    from domain.runs.aggregate import Run
    from domain.runs.states import RunState

TOOL_APPROVAL, SHELL_APPROVAL, QUESTION = "tool_approval", "shell_approval", "question"
GATE_KINDS = (TOOL_APPROVAL, SHELL_APPROVAL, QUESTION)
APPROVE, DENY, ANSWER = "approve", "deny", "answer"
DECISIONS = (APPROVE, DENY, ANSWER)
ONCE, WHOLE_RUN = "once", "run"
SCOPES = (ONCE, WHOLE_RUN)
AUTO_APPROVER = "auto-approve"  # the actor of the gates the engine resolves by itself
BY_OPTION, BY_SCOPE = "auto_approve_tools", "scope_run"  # why it resolved one

STOP, REDIRECT, AMEND = "stop", "redirect", "amend"
DIRECTIVE_KINDS = (STOP, REDIRECT, AMEND)
FOR_THE_RUNNER = frozenset({REDIRECT, AMEND})  # the kinds a runner must be told and apply
# A directive's status on a run it targets; `forwarded` on a run that only passed it on.
PENDING, DELIVERED, APPLIED, FORWARDED = "pending", "delivered", "applied", "forwarded"

MAX_ID = 200
SHA256 = re.compile(r"[0-9a-f]{64}")


def _id(data: dict[str, Any], name: str, event: str) -> None:
    value = data.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
        raise Invalid(f"A {event} event needs a {name} (1 to {MAX_ID} characters).", "events")


def _check_opened(data: dict[str, Any]) -> None:
    _id(data, "gate_id", "gate.opened")
    kind = data.get("kind")
    if kind is not None and kind not in GATE_KINDS:
        raise Invalid(f"A gate's kind is one of {', '.join(GATE_KINDS)}.", "events")
    tool = data.get("tool")
    if tool is not None and (not isinstance(tool, str) or not 1 <= len(tool) <= MAX_ID):
        raise Invalid(f"A gate's tool is a name of 1 to {MAX_ID} characters.", "events")
    if data.get("prompt") is not None and not isinstance(data["prompt"], str):
        raise Invalid("A gate's prompt is a string.", "events")
    sha = data.get("command_sha256")
    if sha is not None and not (isinstance(sha, str) and SHA256.fullmatch(sha)):
        raise Invalid("command_sha256 is 64 lowercase hex digits (never the command).", "events")


def check_gate_output(kind: str, data: dict[str, Any]) -> None:
    """Invalid unless a gate or steering output event (`gate.opened`, `gate.acknowledged`,
    `steering.applied`) is well formed; other kinds are not checked here."""
    if kind == "gate.opened":
        _check_opened(data)
    elif kind == "gate.acknowledged":
        _id(data, "gate_id", kind)
    elif kind == "steering.applied":
        _id(data, "directive_id", kind)


# -- what runner output does to the run's state (applied on every replay: no checks) --------


def _open_gate(run: Run, data: dict[str, Any], at: datetime) -> None:
    run.open_gates = [
        *run.open_gates,
        {
            "gate_id": data["gate_id"],
            "kind": data.get("kind") or QUESTION,  # a gate opened without a kind is a question
            "prompt": data.get("prompt"),
            "tool": data.get("tool"),
            "command_sha256": data.get("command_sha256"),
            "opened_at": at,
        },
    ]


def _acknowledge_gate(run: Run, data: dict[str, Any], at: datetime) -> None:
    run.gate_resolutions = [
        {**r, "acknowledged": True} if r["gate_id"] == data["gate_id"] else r
        for r in run.gate_resolutions
    ]


def _apply_directive(run: Run, data: dict[str, Any], at: datetime) -> None:
    set_directive_status(run, data["directive_id"], APPLIED, {PENDING, DELIVERED})


OUTPUT_EFFECTS = {
    "gate.opened": _open_gate,
    "gate.acknowledged": _acknowledge_gate,
    "steering.applied": _apply_directive,
    "usage.reported": apply_usage,
}


def set_directive_status(run: Run, directive_id: str, status: str, moves_from: set[str]) -> None:
    """Move a directive of the run to `status` if it is in one of the `moves_from` statuses."""
    run.directives = [
        {**d, "status": status}
        if d["directive_id"] == directive_id and d["status"] in moves_from
        else d
        for d in run.directives
    ]


def auto_approval(run: RunState, gate: dict[str, Any]) -> str | None:
    """Why the engine approves an open gate by itself (`auto_approve_tools` on the run, or
    an earlier approval of its tool with scope `run`), or None: only ever a tool approval."""
    if gate["kind"] != TOOL_APPROVAL:
        return None
    if run.auto_approve_tools:
        return BY_OPTION
    if gate["tool"] is not None and gate["tool"] in run.approved_tools:
        return BY_SCOPE
    return None
