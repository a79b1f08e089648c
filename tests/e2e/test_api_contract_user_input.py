"""Bad input to alice's side of the API is refused with a JSON error and changes nothing.

Submitting, listing, reading and commanding runs, and reading their events (pages and streams).
"""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.e2e.contract_helpers import EV, HUGE, NOT_A_UUID, RUN, Case, World, check_refused

GATE, AUTO, STEER = RUN + "/gates/g1", RUN + "/auto-approve", RUN + "/steer"


def _forged_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CASES = [
    # POST /api/runs
    Case("submit-malformed-json", "POST", "/api/runs", content=b'{"task": "x"'),
    Case("submit-empty-body", "POST", "/api/runs", content=b""),
    Case("submit-json-array", "POST", "/api/runs", json=[{"task": "x"}]),
    Case("submit-json-string", "POST", "/api/runs", json="fix it"),
    Case("submit-json-null", "POST", "/api/runs", content=b"null"),
    Case("submit-invalid-utf8", "POST", "/api/runs", content=b'{"task": "\xff\xfe"}'),
    Case("submit-nan", "POST", "/api/runs", content=b'{"task": "x", "max_attempts": NaN}'),
    Case(
        "submit-deeply-nested",
        "POST",
        "/api/runs",
        content=b'{"task": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ),
    Case(
        "submit-form-encoded",
        "POST",
        "/api/runs",
        content=b"task=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case("submit-missing-task", "POST", "/api/runs", json={}, field="task"),
    Case("submit-empty-task", "POST", "/api/runs", json={"task": ""}, field="task"),
    Case("submit-blank-task", "POST", "/api/runs", json={"task": "  \n\t "}, field="task"),
    Case("submit-task-number", "POST", "/api/runs", json={"task": 42}, field="task"),
    Case("submit-task-null", "POST", "/api/runs", json={"task": None}, field="task"),
    Case("submit-task-list", "POST", "/api/runs", json={"task": ["a"]}, field="task"),
    Case(
        "submit-max-attempts-string",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": "3"},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-fraction",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": 2.5},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-bool",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": True},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-0",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": 0},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-11",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": 11},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-huge",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": HUGE},
        field="max_attempts",
    ),
    Case(
        "submit-unknown-field",
        "POST",
        "/api/runs",
        json={"task": "x", "colour": "blue"},
        field="colour",
    ),
    Case(
        "submit-auto-approve-string",
        "POST",
        "/api/runs",
        json={"task": "x", "auto_approve_tools": "yes"},
        field="auto_approve_tools",
    ),
    Case(
        "submit-project-id-not-uuid",
        "POST",
        "/api/runs",
        json={"task": "x", "project_id": "proj-1"},
        field="project_id",
    ),
    Case(
        "submit-parent-id-not-uuid",
        "POST",
        "/api/runs",
        json={"task": "x", "parent_run_id": 12},
        field="parent_run_id",
    ),
    Case("submit-agent-empty", "POST", "/api/runs", json={"task": "x", "agent": ""}, field="agent"),
    Case("submit-model-number", "POST", "/api/runs", json={"task": "x", "model": 4}, field="model"),
    Case(
        "submit-branch-list",
        "POST",
        "/api/runs",
        json={"task": "x", "originating_branch": ["main"]},
        field="originating_branch",
    ),
    # GET /api/runs
    Case("list-status-bogus", "GET", "/api/runs", params={"status": "bogus"}, field="status"),
    Case(
        "list-status-bogus-among-valid",
        "GET",
        "/api/runs",
        params={"status": ["pending", "bogus"]},
        field="status",
    ),
    Case("list-limit-0", "GET", "/api/runs", params={"limit": 0}, field="limit"),
    Case("list-limit-501", "GET", "/api/runs", params={"limit": 501}, field="limit"),
    Case("list-limit-negative", "GET", "/api/runs", params={"limit": -3}, field="limit"),
    Case("list-limit-word", "GET", "/api/runs", params={"limit": "ten"}, field="limit"),
    Case("list-limit-twice", "GET", "/api/runs", params={"limit": ["1", "2"]}, field="limit"),
    Case(
        "projects-min-position-twice",  # not a wait for the larger one, then a 503
        "GET",
        "/api/projects",
        params={"min_position": ["0", "999999"]},
        field="min_position",
    ),
    Case("list-cursor-garbage", "GET", "/api/runs", params={"cursor": "!!!"}, field="cursor"),
    Case("list-cursor-word", "GET", "/api/runs", params={"cursor": "page2"}, field="cursor"),
    # GET /api/runners
    Case("runners-limit-0", "GET", "/api/runners", params={"limit": 0}, field="limit"),
    Case("runners-limit-1001", "GET", "/api/runners", params={"limit": 1001}, field="limit"),
    Case("runners-limit-word", "GET", "/api/runners", params={"limit": "all"}, field="limit"),
    Case(
        "runners-min-position-word",
        "GET",
        "/api/runners",
        params={"min_position": "soon"},
        field="min_position",
    ),
    Case(
        "list-cursor-forged-huge",
        "GET",
        "/api/runs",
        params={"cursor": _forged_cursor(f"p{HUGE}")},
        field="cursor",
    ),
    Case("list-project-bad", "GET", "/api/runs", params={"project_id": "x"}, field="project_id"),
    Case(
        "list-parent-bad", "GET", "/api/runs", params={"parent_run_id": "x"}, field="parent_run_id"
    ),
    Case("list-archived-bad", "GET", "/api/runs", params={"archived": "maybe"}, field="archived"),
    Case(
        "list-min-position-negative",
        "GET",
        "/api/runs",
        params={"min_position": -1},
        field="min_position",
    ),
    Case(
        "list-min-position-word",
        "GET",
        "/api/runs",
        params={"min_position": "soon"},
        field="min_position",
    ),
    Case(
        "list-x-min-position-word",
        "GET",
        "/api/runs",
        headers={"X-Min-Position": "soon"},
        field="X-Min-Position",
    ),
    # GET /api/runs/{id}
    Case("get-bad-uuid", "GET", f"/api/runs/{NOT_A_UUID}", field="run_id"),
    Case("get-at-sequence-0", "GET", RUN, params={"at_sequence": 0}, field="at_sequence"),
    Case("get-at-sequence-negative", "GET", RUN, params={"at_sequence": -2}, field="at_sequence"),
    Case("get-at-sequence-word", "GET", RUN, params={"at_sequence": "one"}, field="at_sequence"),
    Case("get-min-position-word", "GET", RUN, params={"min_position": "x"}, field="min_position"),
    # commands: bad ids in the path
    *[
        Case(f"{verb}-bad-uuid", "POST", f"/api/runs/{NOT_A_UUID}/{verb}", json={}, field="run_id")
        for verb in ("pause", "resume", "cancel", "archive", "retry")
    ],
    Case(
        "review-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/review",
        json={"approved": True},
        field="run_id",
    ),
    Case("delete-bad-uuid", "DELETE", f"/api/runs/{NOT_A_UUID}", field="run_id"),
    Case("delete-bad-uuid-almost", "DELETE", "/api/runs/1234", field="run_id"),
    # commands: bad bodies (pause/resume/archive/retry take none, so garbage is still garbage)
    Case("pause-malformed-json", "POST", "/api/runs/{fresh}/pause", content=b'{"x'),
    Case("pause-json-array", "POST", "/api/runs/{fresh}/pause", json=[1]),
    Case("pause-unknown-field", "POST", "/api/runs/{fresh}/pause", json={"now": True}, field="now"),
    Case("resume-malformed-json", "POST", "/api/runs/{fresh}/resume", content=b"{{"),
    Case("archive-malformed-json", "POST", "/api/runs/{fresh}/archive", content=b"[,"),
    Case(
        "archive-unknown-field",
        "POST",
        "/api/runs/{fresh}/archive",
        json={"force": True},
        field="force",
    ),
    Case("retry-malformed-json", "POST", "/api/runs/{fresh}/retry", content=b"{garbage"),
    Case("cancel-malformed-json", "POST", RUN + "/cancel", content=b'{"reason": '),
    Case("cancel-json-array", "POST", RUN + "/cancel", json=["now"]),
    Case("cancel-reason-number", "POST", RUN + "/cancel", json={"reason": 5}, field="reason"),
    Case(
        "cancel-unknown-field",
        "POST",
        RUN + "/cancel",
        json={"reason": "x", "force": True},
        field="force",
    ),
    Case("review-malformed-json", "POST", RUN + "/review", content=b"{'approved': true}"),
    Case("review-missing-approved", "POST", RUN + "/review", json={}, field="approved"),
    Case(
        "review-approved-string",
        "POST",
        RUN + "/review",
        json={"approved": "yes"},
        field="approved",
    ),
    Case("review-approved-int", "POST", RUN + "/review", json={"approved": 1}, field="approved"),
    Case(
        "review-approve-and-request-changes",
        "POST",
        RUN + "/review",
        json={"approved": True, "request_changes": True},
        field="request_changes",
    ),
    Case(
        "review-comment-number",
        "POST",
        RUN + "/review",
        json={"approved": False, "comment": 3},
        field="comment",
    ),
    Case(
        "review-unknown-field",
        "POST",
        RUN + "/review",
        json={"approved": False, "score": 3},
        field="score",
    ),
    # POST /api/runs/{id}/gates/{gate_id} (main has no open gate: a valid body is a 409)
    Case(
        "gate-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/gates/g1",
        json={"decision": "approve"},
        field="run_id",
    ),
    Case(
        "gate-id-too-long",
        "POST",
        RUN + "/gates/" + "g" * 201,
        json={"decision": "approve"},
        field="gate_id",
    ),
    Case("gate-malformed-json", "POST", GATE, content=b'{"decision": '),
    Case("gate-empty-body", "POST", GATE, content=b""),
    Case("gate-json-array", "POST", GATE, json=["approve"]),
    Case("gate-missing-decision", "POST", GATE, json={}, field="decision"),
    Case("gate-decision-bogus", "POST", GATE, json={"decision": "maybe"}, field="decision"),
    Case("gate-decision-bool", "POST", GATE, json={"decision": True}, field="decision"),
    Case(
        "gate-answer-number",
        "POST",
        GATE,
        json={"decision": "answer", "answer": 42},
        field="answer",
    ),
    Case(
        "gate-scope-bogus",
        "POST",
        GATE,
        json={"decision": "approve", "scope": "forever"},
        field="scope",
    ),
    Case(
        "gate-unknown-field",
        "POST",
        GATE,
        json={"decision": "approve", "why": "because"},
        field="why",
    ),
    Case("gate-not-open", "POST", GATE, json={"decision": "approve"}, status=409, error="conflict"),
    Case(
        "gate-of-an-ended-run",
        "POST",
        "/api/runs/{done}/gates/g1",
        json={"decision": "approve"},
        status=409,
        error="conflict",
    ),
    # POST /api/runs/{id}/auto-approve
    Case(
        "auto-approve-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/auto-approve",
        json={"enabled": True},
        field="run_id",
    ),
    Case("auto-approve-malformed-json", "POST", AUTO, content=b"{enabled}"),
    Case("auto-approve-empty-body", "POST", AUTO, content=b""),
    Case("auto-approve-missing-enabled", "POST", AUTO, json={}, field="enabled"),
    Case("auto-approve-enabled-string", "POST", AUTO, json={"enabled": "yes"}, field="enabled"),
    Case("auto-approve-enabled-int", "POST", AUTO, json={"enabled": 1}, field="enabled"),
    Case(
        "auto-approve-unknown-field",
        "POST",
        AUTO,
        json={"enabled": True, "tools": ["bash"]},
        field="tools",
    ),
    Case(
        "auto-approve-an-ended-run",
        "POST",
        "/api/runs/{done}/auto-approve",
        json={"enabled": True},
        status=409,
        error="conflict",
    ),
    # POST /api/runs/{id}/steer (never a valid directive to main: it would take effect)
    Case(
        "steer-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/steer",
        json={"kind": "stop", "instruction": "x"},
        field="run_id",
    ),
    Case("steer-malformed-json", "POST", STEER, content=b'{"kind": "stop"'),
    Case("steer-json-string", "POST", STEER, json="stop"),
    Case("steer-missing-kind", "POST", STEER, json={"instruction": "x"}, field="kind"),
    Case(
        "steer-kind-bogus",
        "POST",
        STEER,
        json={"kind": "pause", "instruction": "x"},
        field="kind",
    ),
    Case("steer-missing-instruction", "POST", STEER, json={"kind": "stop"}, field="instruction"),
    Case(
        "steer-blank-instruction",
        "POST",
        STEER,
        json={"kind": "redirect", "instruction": " \n "},
        field="instruction",
    ),
    Case(
        "steer-instruction-number",
        "POST",
        STEER,
        json={"kind": "amend", "instruction": 5},
        field="instruction",
    ),
    Case(
        "steer-target-not-uuid",
        "POST",
        STEER,
        json={"kind": "stop", "instruction": "x", "target_child_run_id": "child"},
        field="target_child_run_id",
    ),
    Case(
        "steer-unknown-field",
        "POST",
        STEER,
        json={"kind": "stop", "instruction": "x", "now": True},
        field="now",
    ),
    Case(
        "steer-target-no-such-child",
        "POST",
        STEER,
        json={"kind": "stop", "instruction": "x", "target_child_run_id": str(uuid.uuid4())},
        status=404,
        error="not_found",
    ),
    Case(
        "steer-an-ended-run",
        "POST",
        "/api/runs/{done}/steer",
        json={"kind": "amend", "instruction": "x"},
        status=409,
        error="conflict",
    ),
    # GET /api/runs/{id}/events
    Case("run-events-after-negative", "GET", EV, params={"after": -1}, field="after"),
    Case("run-events-after-word", "GET", EV, params={"after": "start"}, field="after"),
    Case("run-events-limit-0", "GET", EV, params={"limit": 0}, field="limit"),
    Case("run-events-limit-1001", "GET", EV, params={"limit": 1001}, field="limit"),
    Case("run-events-limit-fraction", "GET", EV, params={"limit": 1.5}, field="limit"),
    Case("run-events-bad-uuid", "GET", f"/api/runs/{NOT_A_UUID}/events", field="run_id"),
    # GET /api/runs/{id}/stream
    *[
        Case(
            f"run-stream-last-event-id-{label}",
            "GET",
            RUN + "/stream",
            headers={"Last-Event-ID": value},
            field="Last-Event-ID",
        )
        for label, value in (("word", "seven"), ("negative", "-1"), ("fraction", "1.5"))
    ],
    Case("run-stream-after-negative", "GET", RUN + "/stream", params={"after": -1}, field="after"),
    Case("run-stream-after-word", "GET", RUN + "/stream", params={"after": "x"}, field="after"),
    Case("run-stream-bad-uuid", "GET", f"/api/runs/{NOT_A_UUID}/stream", field="run_id"),
    # GET /api/events and /api/events/stream
    Case("global-after-negative", "GET", "/api/events", params={"after": -5}, field="after"),
    Case("global-limit-0", "GET", "/api/events", params={"limit": 0}, field="limit"),
    Case("global-limit-1001", "GET", "/api/events", params={"limit": 1001}, field="limit"),
    Case("global-run-id-bad", "GET", "/api/events", params={"run_id": "r1"}, field="run_id"),
    Case(
        "global-project-id-bad",
        "GET",
        "/api/events",
        params={"project_id": "p"},
        field="project_id",
    ),
    Case("global-type-empty", "GET", "/api/events", params={"type": ""}, field="type"),
    Case(
        "global-stream-last-event-id-word",
        "GET",
        "/api/events/stream",
        headers={"Last-Event-ID": "latest"},
        field="Last-Event-ID",
    ),
    Case(
        "global-stream-after-negative",
        "GET",
        "/api/events/stream",
        params={"after": -1},
        field="after",
    ),
    Case(
        "global-stream-run-id-bad",
        "GET",
        "/api/events/stream",
        params={"run_id": "r1"},
        field="run_id",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_with_a_json_error_and_changes_nothing(
    world: World, case: Case
) -> None:
    check_refused(world, case)
