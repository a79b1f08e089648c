"""Every event's hash recomputed independently of runledger's hashing code: for each run's
and project's history read over HTTP, `prev_hash` is the stream's previous `hash` (64
zeros first), and `hash` is SHA-256 of the RFC 8785 form of the envelope without `hash`
and `position`, computed here with the `rfc8785` package and hashlib alone."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from tests.e2e.helpers import global_history
from tests.e2e.projects_helpers import Site, User, create_project, expect
from tests.e2e.runs_helpers import append, claim, history, report, submit
from tests.support import RUNNER

ZEROS = "0" * 64


def recomputed(event: dict[str, Any]) -> str:
    """The hash an event should carry, from its own envelope."""
    body = {k: v for k, v in event.items() if k not in ("hash", "position")}
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def check_chain(events: list[dict[str, Any]]) -> None:
    """One stream's events, in order, form an unbroken chain of correct hashes."""
    prev = ZEROS
    for event in events:
        assert event["prev_hash"] == prev, event
        assert event["hash"] == recomputed(event), event
        prev = event["hash"]


def test_every_hash_of_a_runs_history_is_recomputed_from_its_envelope(
    site: Site, alice: User
) -> None:
    run_id = submit(alice, task="hash me: ünïcode ✓ and 😀")["run_id"]
    with site.server.client(RUNNER) as runner:
        token = claim(runner, run_id)["fencing_token"]
        append(
            runner,
            run_id,
            token,
            {"type": "log", "data": {"line": "plain", "n": 9007199254740991}},
            {"type": "log", "data": {"ratio": 0.1, "big": 1e21, "tiny": 1e-7, "neg": -2.5}},
            {"type": "log", "data": {"é": 1, "z": 2, "a": [True, None, {"😀": "x"}]}},
            {"type": "tool.output", "data": {"stream": "stdout", "text": 'a\u2028b\x1f"\\'}},
        )
        report(runner, run_id, token, "failed", failure={"category": "agent", "message": "no"})

    events = history(alice, run_id)
    assert len(events) >= 6
    check_chain(events)


def test_every_hash_of_a_projects_board_history_is_recomputed(alice: User) -> None:
    pid = create_project(alice)["project_id"]
    tasks = f"/api/projects/{pid}/backlog/tasks"
    task = expect(alice.post(tasks, json={"title": "größer", "description": "∑"}), 201)
    expect(alice.post(f"{tasks}/{task['task_id']}/ready"), 200)
    expect(alice.post(f"{tasks}/{task['task_id']}/start"), 202)

    log = global_history(alice, params={"project_id": pid})
    project_events = [e for e in log if e.get("project_id") == pid and "run_id" not in e]
    assert [e["type"] for e in project_events][:2] == ["project.created", "backlog.task_created"]
    check_chain(project_events)
    run_events = [e for e in log if "run_id" in e]
    assert run_events and run_events[0]["type"] == "run.submitted"
    check_chain(run_events)
