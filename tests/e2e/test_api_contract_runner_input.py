"""Bad input to the runner's side of the API is refused with a JSON error and changes nothing.

Claims, event batches and reports: alice's main run is claimed under a current lease and a
pending run is waiting, so only validation may refuse these.
"""

from __future__ import annotations

import pytest

from tests.e2e.contract_helpers import EV, LOG, NOT_A_UUID, REPORT, Case, R, World, check_refused

CASES = [
    # POST /api/runner/claim (a pending run is waiting: a bad claim must not take it)
    Case("claim-malformed-json", "POST", "/api/runner/claim", key=R, content=b"{"),
    Case("claim-json-array", "POST", "/api/runner/claim", key=R, json=["r1"]),
    Case("claim-missing-runner-id", "POST", "/api/runner/claim", key=R, json={}, field="runner_id"),
    Case(
        "claim-runner-id-empty",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": ""},
        field="runner_id",
    ),
    Case(
        "claim-runner-id-number",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": 7},
        field="runner_id",
    ),
    Case(
        "claim-wait-negative",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": "r1", "wait_seconds": -1},
        field="wait_seconds",
    ),
    Case(
        "claim-wait-31",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": "r1", "wait_seconds": 31},
        field="wait_seconds",
    ),
    Case(
        "claim-wait-string",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": "r1", "wait_seconds": "5"},
        field="wait_seconds",
    ),
    Case(
        "claim-unknown-field",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": "r1", "greedy": True},
        field="greedy",
    ),
    # POST /api/runs/{id}/events (main's lease is current: only validation may refuse these)
    Case("events-malformed-json", "POST", EV, key=R, content=b'{"fencing_token": 1, "events": ['),
    Case("events-json-array", "POST", EV, key=R, json=[LOG]),
    Case("events-missing-token", "POST", EV, key=R, json={"events": [LOG]}, field="fencing_token"),
    Case(
        "events-token-string",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "1", "events": [LOG]},
        field="fencing_token",
    ),
    Case(
        "events-token-zero",
        "POST",
        EV,
        key=R,
        json={"fencing_token": 0, "events": [LOG]},
        field="fencing_token",
    ),
    Case(
        "events-missing-events", "POST", EV, key=R, json={"fencing_token": "$token"}, field="events"
    ),
    Case(
        "events-zero-events",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": []},
        field="events",
    ),
    Case(
        "events-501-events",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [LOG] * 501},
        field="events",
    ),
    Case(
        "events-not-a-list",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": LOG},
        field="events",
    ),
    Case(
        "events-unknown-type",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"type": "agent.explode", "data": {}}]},
        field="events",
    ),
    Case(
        "events-unknown-type-after-good-ones",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [LOG, LOG, LOG, {"type": "run.completed"}]},
        field="events",
    ),
    Case(
        "events-missing-type",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"data": {}}]},
        field="events",
    ),
    Case(
        "events-type-empty",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"type": "", "data": {}}]},
        field="events",
    ),
    Case(
        "events-data-string",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"type": "log", "data": "hello"}]},
        field="events",
    ),
    Case(
        "events-event-unknown-field",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{**LOG, "at": "now"}]},
        field="events",
    ),
    Case(
        "events-unknown-field",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [LOG], "batch": 1},
        field="batch",
    ),
    Case(
        "events-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/events",
        key=R,
        json={"fencing_token": "$token", "events": [LOG]},
        field="run_id",
    ),
    # gates and steering in a batch (main's lease is current)
    *[
        Case(
            f"events-{name}",
            "POST",
            EV,
            key=R,
            json={"fencing_token": "$token", "events": [LOG, {"type": kind, "data": data}]},
            field="events",
        )
        for name, kind, data in [
            ("gate-kind-bogus", "gate.opened", {"kind": "tool", "prompt": "p"}),
            ("gate-kind-number", "gate.opened", {"kind": 1}),
            ("gate-id-number", "gate.opened", {"gate_id": 7, "kind": "question"}),
            ("gate-id-too-long", "gate.opened", {"gate_id": "g" * 201, "kind": "question"}),
            ("gate-tool-list", "gate.opened", {"kind": "tool_approval", "tool": ["bash"]}),
            ("gate-prompt-object", "gate.opened", {"kind": "question", "prompt": {"q": 1}}),
            (
                "gate-sha-a-command",
                "gate.opened",
                {"kind": "shell_approval", "command_sha256": "ls"},
            ),
            ("gate-acknowledged-without-id", "gate.acknowledged", {}),
            ("gate-acknowledged-id-null", "gate.acknowledged", {"gate_id": None}),
            ("steering-applied-without-id", "steering.applied", {}),
            ("steering-applied-id-number", "steering.applied", {"directive_id": 3}),
        ]
    ],
    # POST /api/runs/{id}/report (main's lease is current: only validation may refuse these)
    Case("report-malformed-json", "POST", REPORT, key=R, content=b'{"outcome": "changes",}'),
    Case("report-json-array", "POST", REPORT, key=R, json=["changes"]),
    Case(
        "report-missing-outcome",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token"},
        field="outcome",
    ),
    Case(
        "report-outcome-bogus",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "great"},
        field="outcome",
    ),
    Case(
        "report-missing-token",
        "POST",
        REPORT,
        key=R,
        json={"outcome": "no_changes"},
        field="fencing_token",
    ),
    Case(
        "report-token-negative",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": -1, "outcome": "no_changes"},
        field="fencing_token",
    ),
    Case(
        "report-diff-stats-negative",
        "POST",
        REPORT,
        key=R,
        json={
            "fencing_token": "$token",
            "outcome": "changes",
            "diff_stats": {"files": -1, "added": 0, "removed": 0},
        },
        field="diff_stats",
    ),
    Case(
        "report-diff-stats-string",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "changes", "diff_stats": "lots"},
        field="diff_stats",
    ),
    Case(
        "report-diff-stats-incomplete",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "changes", "diff_stats": {"files": 1}},
        field="diff_stats",
    ),
    Case(
        "report-failure-category-bogus",
        "POST",
        REPORT,
        key=R,
        json={
            "fencing_token": "$token",
            "outcome": "failed",
            "failure": {"category": "cosmic-rays", "message": "m"},
        },
        field="failure",
    ),
    Case(
        "report-failure-message-missing",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "failed", "failure": {"category": "agent"}},
        field="failure",
    ),
    Case(
        "report-tree-hash-number",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "changes", "tree_hash": 123},
        field="tree_hash",
    ),
    Case(
        "report-unknown-field",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "no_changes", "mood": "happy"},
        field="mood",
    ),
    Case(
        "report-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/report",
        key=R,
        json={"fencing_token": "$token", "outcome": "no_changes"},
        field="run_id",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_with_a_json_error_and_changes_nothing(
    world: World, case: Case
) -> None:
    check_refused(world, case)
