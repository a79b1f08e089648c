"""The Run aggregate's human gates: opened by the runner, resolved once by a user, approved by
the engine itself for tools where the run allows it.

Given events, when a command, then the events appended or the error.
"""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import Conflict, Invalid
from domain.runs import CANCELLED, COMPLETED, DECLINED, FAILED, IN_PROGRESS, PENDING, Run
from tests.unit.helpers import (
    ENDED,
    LATER,
    NOW,
    OWNER,
    appended,
    claim,
    given,
    output,
    report,
    review,
    submit,
)

SHA = "ab" * 32


def gate(gate_id: str, kind: str | None = "tool_approval", **fields: Any) -> tuple[str, dict]:
    """A runner's `gate.opened` output event."""
    data = {"gate_id": gate_id, "prompt": f"may I ({gate_id})?", **fields}
    if kind is not None:
        data["kind"] = kind
    return ("gate.opened", data)


def resolve(
    run: Run, gate_id: str, decision: str, answer: str | None = None, scope: str = "once"
) -> None:
    """OWNER resolves a gate."""
    run.resolve_gate(
        gate_id=gate_id, decision=decision, answer=answer, scope=scope, actor=OWNER, now=LATER
    )


def open_ids(run: Run) -> list[str]:
    return [g["gate_id"] for g in run.open_gates]


def resolutions(run: Run) -> list[dict[str, Any]]:
    """The gate.resolved events appended since the last look, as their wire fields."""
    return [
        {k: getattr(e, k) for k in ("actor", "gate_id", "decision", "scope", "reason")}
        for e in run.collect_events()
        if e.wire_type() == "gate.resolved"
    ]


def in_progress_with(*gates: tuple[str, dict], **options: Any) -> Run:
    """A run in progress (with these options) whose runner opened these gates."""
    run = given(IN_PROGRESS)
    if options.get("auto_approve_tools"):
        run.set_auto_approve(enabled=True, actor=OWNER, now=NOW)
    if gates:
        output(run, *gates)
    run.collect_events()
    return run


# -- opening ----------------------------------------------------------------------------------


def test_a_gate_opened_without_a_kind_is_a_question() -> None:
    run = given(IN_PROGRESS)

    output(run, gate("g1", kind=None))

    assert run.open_gates[0]["kind"] == "question"
    assert appended(run) == ["gate.opened"]


@pytest.mark.parametrize(
    "data",
    [
        {"gate_id": "g1", "kind": "tool"},
        {"gate_id": "g1", "kind": ""},
        {"gate_id": "g1", "kind": 3},
        {"gate_id": "", "kind": "question"},
        {"gate_id": "g" * 201, "kind": "question"},
        {"gate_id": "g1", "kind": "tool_approval", "tool": 5},
        {"gate_id": "g1", "kind": "shell_approval", "command_sha256": "rm -rf /"},
        {"gate_id": "g1", "kind": "question", "prompt": ["?"]},
    ],
)
def test_a_malformed_gate_is_invalid_and_appends_nothing(data: dict[str, Any]) -> None:
    run = given(IN_PROGRESS)

    with pytest.raises(Invalid) as error:
        output(run, ("log", {}), ("gate.opened", data))

    assert error.value.field == "events"
    assert (run.open_gates, appended(run)) == ([], [])


def test_a_shell_gate_records_the_commands_hash_and_the_tool_gate_its_tool() -> None:
    run = given(IN_PROGRESS)

    output(run, gate("s", "shell_approval", command_sha256=SHA), gate("t", tool="bash"))

    assert [(g["kind"], g["command_sha256"], g["tool"]) for g in run.open_gates] == [
        ("shell_approval", SHA, None),
        ("tool_approval", None, "bash"),
    ]


# -- resolving --------------------------------------------------------------------------------


def test_resolving_an_open_gate_records_the_decision_and_closes_the_gate() -> None:
    run = in_progress_with(gate("g1", tool="bash"), gate("g2"))

    resolve(run, "g1", "deny")

    assert open_ids(run) == ["g2"]
    assert run.unacknowledged_gates() == [
        {"gate_id": "g1", "decision": "deny", "answer": None, "scope": "once"}
    ]
    events = run.collect_events()
    assert [e.wire_type() for e in events] == ["gate.resolved"]
    assert (events[0].actor, events[0].tool, events[0].reason) == (OWNER, "bash", None)


def test_a_question_is_answered() -> None:
    run = in_progress_with(gate("q", "question"))

    resolve(run, "q", "answer", answer="use postgres")

    assert open_ids(run) == []
    assert run.unacknowledged_gates() == [
        {"gate_id": "q", "decision": "answer", "answer": "use postgres", "scope": "once"}
    ]


@pytest.mark.parametrize("kind", ["question", None])
@pytest.mark.parametrize(
    ("decision", "answer", "field"),
    [("answer", None, "answer"), ("approve", None, "decision"), ("deny", "no", "decision")],
)
def test_a_question_needs_the_decision_answer_and_an_answer(
    kind: str | None, decision: str, answer: str | None, field: str
) -> None:
    run = in_progress_with(gate("q", kind))

    with pytest.raises(Invalid) as error:
        resolve(run, "q", decision, answer)

    assert error.value.field == field
    assert (open_ids(run), appended(run)) == (["q"], [])


@pytest.mark.parametrize("kind", ["tool_approval", "shell_approval"])
@pytest.mark.parametrize(
    ("decision", "answer", "field"),
    [("answer", "yes", "decision"), ("answer", None, "decision"), ("approve", "yes", "answer")],
)
def test_an_approval_gate_is_approved_or_denied_without_an_answer(
    kind: str, decision: str, answer: str | None, field: str
) -> None:
    run = in_progress_with(gate("g", kind))

    with pytest.raises(Invalid) as error:
        resolve(run, "g", decision, answer)

    assert error.value.field == field
    assert (open_ids(run), appended(run)) == (["g"], [])


@pytest.mark.parametrize(("decision", "scope"), [("maybe", "once"), ("approve", "forever")])
def test_an_unknown_decision_or_scope_is_invalid(decision: str, scope: str) -> None:
    run = in_progress_with(gate("g"))

    with pytest.raises(Invalid):
        resolve(run, "g", decision, scope=scope)

    assert appended(run) == []


def test_resolving_a_gate_that_never_opened_is_a_conflict() -> None:
    run = in_progress_with(gate("g1"))

    with pytest.raises(Conflict) as error:
        resolve(run, "g2", "approve")

    assert error.value.status == IN_PROGRESS
    assert appended(run) == []


def test_resolving_a_gate_twice_is_a_conflict_and_appends_nothing() -> None:
    run = in_progress_with(gate("g1"))
    resolve(run, "g1", "approve")
    run.collect_events()

    with pytest.raises(Conflict):
        resolve(run, "g1", "approve")

    assert appended(run) == []


def ended_with_an_open_gate(status: str) -> Run:
    """A run whose runner opened gate g1, then the run ended in `status` with g1 open."""
    run = in_progress_with(gate("g1"))
    if status == CANCELLED:
        run.cancel(actor=OWNER, now=LATER)
    elif status in (COMPLETED, FAILED):
        report(run, "no_changes" if status == COMPLETED else "failed")
    else:
        report(run, "changes")
        review(run, "decline" if status == DECLINED else "approve")
    assert (run.status, open_ids(run)) == (status, ["g1"])
    run.collect_events()
    return run


@pytest.mark.parametrize("status", ENDED)
def test_resolving_a_gate_left_open_when_the_run_ended_is_a_conflict(status: str) -> None:
    run = ended_with_an_open_gate(status)

    with pytest.raises(Conflict) as error:
        resolve(run, "g1", "approve")

    assert error.value.status == status
    assert appended(run) == []


def test_the_runner_acknowledges_a_resolution_and_is_not_told_again() -> None:
    run = in_progress_with(gate("g1"), gate("g2"))
    resolve(run, "g1", "approve")
    resolve(run, "g2", "deny")

    output(run, ("gate.acknowledged", {"gate_id": "g1"}), ("gate.acknowledged", {"gate_id": "x"}))

    assert [g["gate_id"] for g in run.unacknowledged_gates()] == ["g2"]


# -- the engine's own approvals ---------------------------------------------------------------


def test_auto_approve_tools_resolves_a_tool_gate_in_the_batch_that_opened_it() -> None:
    run = in_progress_with(auto_approve_tools=True)

    output(run, gate("t", tool="bash"), ("log", {"line": "waiting"}))

    assert open_ids(run) == []
    assert resolutions(run) == [
        {
            "actor": "auto-approve",
            "gate_id": "t",
            "decision": "approve",
            "scope": "once",
            "reason": "auto_approve_tools",
        }
    ]


def test_auto_approve_tools_leaves_questions_and_shell_approvals_open() -> None:
    run = in_progress_with(auto_approve_tools=True)

    output(run, gate("q", "question"), gate("s", "shell_approval"), gate("n", None))

    assert open_ids(run) == ["q", "s", "n"]
    assert appended(run) == ["gate.opened"] * 3


def test_a_scope_run_approval_resolves_later_gates_of_that_tool_only() -> None:
    run = in_progress_with(gate("t1", tool="bash"))
    resolve(run, "t1", "approve", scope="run")
    run.collect_events()

    output(
        run,
        gate("t2", tool="bash"),
        gate("e", tool="edit"),
        gate("s", "shell_approval", tool="bash"),
        gate("q", "question", tool="bash"),
    )

    assert open_ids(run) == ["e", "s", "q"]
    assert [(r["gate_id"], r["reason"]) for r in resolutions(run)] == [("t2", "scope_run")]


def test_a_scope_run_approval_also_resolves_the_tools_gates_open_now() -> None:
    run = in_progress_with(gate("t1", tool="bash"), gate("t2", tool="bash"), gate("e", tool="ed"))

    resolve(run, "t1", "approve", scope="run")

    assert open_ids(run) == ["e"]
    assert [(r["actor"], r["gate_id"], r["reason"]) for r in resolutions(run)] == [
        (OWNER, "t1", None),
        ("auto-approve", "t2", "scope_run"),
    ]


@pytest.mark.parametrize(("decision", "scope"), [("deny", "run"), ("approve", "once")])
def test_only_a_scope_run_approval_carries_over_to_later_gates(decision: str, scope: str) -> None:
    run = in_progress_with(gate("t1", tool="bash"))
    resolve(run, "t1", decision, scope=scope)
    run.collect_events()

    output(run, gate("t2", tool="bash"))

    assert open_ids(run) == ["t2"]


def test_a_scope_run_approval_of_a_gate_without_a_tool_carries_over_to_nothing() -> None:
    run = in_progress_with(gate("t1"))
    resolve(run, "t1", "approve", scope="run")
    run.collect_events()

    output(run, gate("t2"))

    assert (open_ids(run), run.approved_tools) == (["t2"], [])


def test_turning_auto_approve_on_approves_the_tool_gates_open_now() -> None:
    run = in_progress_with(gate("t", tool="bash"), gate("q", "question"))

    run.set_auto_approve(enabled=True, actor=OWNER, now=LATER)

    assert run.auto_approve_tools is True
    assert open_ids(run) == ["q"]
    assert appended(run) == ["run.option_changed", "gate.resolved"]


def test_turning_auto_approve_off_leaves_later_tool_gates_to_a_human() -> None:
    run = in_progress_with(auto_approve_tools=True)
    run.set_auto_approve(enabled=False, actor=OWNER, now=LATER)
    assert appended(run) == ["run.option_changed"]

    output(run, gate("t", tool="bash"))

    assert open_ids(run) == ["t"]


@pytest.mark.parametrize("enabled", [True, False])
def test_setting_auto_approve_to_what_it_is_appends_nothing(enabled: bool) -> None:
    run = in_progress_with(auto_approve_tools=enabled)

    run.set_auto_approve(enabled=enabled, actor=OWNER, now=LATER)

    assert appended(run) == []


def test_auto_approve_can_be_set_on_a_pending_run() -> None:
    run = given(PENDING)

    run.set_auto_approve(enabled=True, actor=OWNER, now=LATER)

    assert appended(run) == ["run.option_changed"]
    assert run.assignment()["auto_approve_tools"] is True


@pytest.mark.parametrize("status", ENDED)
def test_auto_approve_on_an_ended_run_is_a_conflict(status: str) -> None:
    run = given(status)

    with pytest.raises(Conflict) as error:
        run.set_auto_approve(enabled=True, actor=OWNER, now=LATER)

    assert error.value.status == status
    assert appended(run) == []


def test_gates_and_their_resolutions_replay_to_the_same_run() -> None:
    run = submit()
    claim(run)
    output(run, gate("t1", tool="bash"), gate("q", "question"))
    resolve(run, "t1", "approve", scope="run")
    output(run, gate("t2", tool="bash"), ("gate.acknowledged", {"gate_id": "t1"}))
    resolve(run, "q", "answer", answer="yes")
    run.set_auto_approve(enabled=True, actor=OWNER, now=LATER)

    replayed = None
    for event in run.collect_events():
        replayed = event.mutate(replayed)

    assert vars(replayed) == vars(run)
