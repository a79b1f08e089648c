"""Human gates over real HTTP, per API.md "Gates": a runner opens one, a user resolves it once,
the runner learns of it on the run's stream (read with its own key) and in heartbeat answers;
the engine approves tool gates by itself where the run allows it.

Each test gets its own server (the `server` fixture, on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.runs_helpers import (
    append,
    claim,
    conflict,
    error,
    history,
    last_sequence,
    ok,
    read_run,
    report,
    sse,
    submit,
)
from tests.support import ALICE, RUNNER, Server


def opened(gate_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    """A runner's `gate.opened` event."""
    return {
        "type": "gate.opened",
        "data": {"gate_id": gate_id, "kind": kind, "prompt": f"{gate_id}?", **fields},
    }


def resolve(client: httpx.Client, run: str, gate_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/api/runs/{run}/gates/{gate_id}", json=body)


def heartbeat(runner: httpx.Client, lease: dict[str, Any]) -> dict[str, Any]:
    return dict(ok(runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")))


def gates_of(client: httpx.Client, run: str, position: int) -> list[str]:
    """The ids of the run's open gates, once the read model includes `position`."""
    return [g["gate_id"] for g in read_run(client, run, position)["open_gates"]]


def started(alice: httpx.Client, runner: httpx.Client, **options: Any) -> tuple[str, dict]:
    """A run of alice's (with these options), claimed by the runner: (run id, lease)."""
    run = submit(alice, **options)["run_id"]
    return run, claim(runner, run)


def test_a_resolution_reaches_the_runner_on_its_stream_and_in_heartbeats_until_acknowledged(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run, lease = started(alice, runner)
        token = lease["fencing_token"]
        after_open = append(runner, run, token, opened("q1", "question", tool="ask"))
        seen = read_run(alice, run, after_open["position"])["open_gates"]
        assert [(g["gate_id"], g["kind"], g["prompt"]) for g in seen] == [("q1", "question", "q1?")]

        answer = ok(resolve(alice, run, "q1", decision="answer", answer="use postgres"))
        assert answer["run_id"] == run and answer["gate_id"] == "q1", answer
        assert answer["decision"] == "answer" and answer["sequence"] == after_open["sequence"] + 1
        assert isinstance(answer["position"], int)

        # The runner follows its own run's stream with its runner key.
        with sse(runner, f"/api/runs/{run}/stream", params={"after": after_open["sequence"]}) as (
            _,
            frames,
        ):
            frame = next(frames)
        assert (frame["id"], frame["event"]) == (str(answer["sequence"]), "gate.resolved")
        envelope = json.loads(frame["data"])
        assert envelope["actor"] == "alice"
        assert envelope["data"] == {
            "gate_id": "q1",
            "decision": "answer",
            "answer": "use postgres",
            "scope": "once",
            "tool": "ask",
            "reason": None,
        }

        # ... and in every heartbeat answer until it acknowledges the resolution.
        resolved = [
            {"gate_id": "q1", "decision": "answer", "answer": "use postgres", "scope": "once"}
        ]
        for _ in range(2):
            beat = heartbeat(runner, lease)
            assert (beat["gates"], beat["directives"]) == (resolved, [])
        append(runner, run, token, {"type": "gate.acknowledged", "data": {"gate_id": "q1"}})
        assert heartbeat(runner, lease)["gates"] == []
        assert gates_of(alice, run, answer["position"]) == []


def test_resolving_a_gate_that_is_not_open_is_409_and_appends_nothing(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run, lease = started(alice, runner)
        token = lease["fencing_token"]
        conflict(resolve(alice, run, "never", decision="approve"), "in_progress")

        append(runner, run, token, opened("t1", "tool_approval", tool="bash"))
        first = ok(resolve(alice, run, "t1", decision="deny"))
        before = last_sequence(alice, run)
        conflict(resolve(alice, run, "t1", decision="deny"), "in_progress")
        conflict(resolve(alice, run, "t1", decision="approve"), "in_progress")
        assert last_sequence(alice, run) == before == first["sequence"]

        # A gate left open when the run ended cannot be resolved any more.
        append(runner, run, token, opened("t2", "tool_approval"))
        report(runner, run, token, "no_changes")
        before = last_sequence(alice, run)
        conflict(resolve(alice, run, "t2", decision="approve"), "completed")
        assert last_sequence(alice, run) == before


def test_a_resolution_must_fit_the_gates_kind(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run, lease = started(alice, runner)
        append(
            runner,
            run,
            lease["fencing_token"],
            opened("q", "question"),
            opened("t", "tool_approval"),
        )
        before = last_sequence(alice, run)
        for gate_id, body in [
            ("q", {"decision": "approve"}),
            ("q", {"decision": "answer"}),
            ("t", {"decision": "answer", "answer": "yes"}),
            ("t", {"decision": "approve", "answer": "yes"}),
        ]:
            error(resolve(alice, run, gate_id, **body), 400, "invalid_request")
        assert last_sequence(alice, run) == before


def test_auto_approve_resolves_tool_gates_as_they_open_and_leaves_questions_and_shells_open(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run, lease = started(alice, runner, auto_approve_tools=True)
        batch = append(
            runner,
            run,
            lease["fencing_token"],
            opened("t", "tool_approval", tool="edit"),
            opened("q", "question"),
            opened("s", "shell_approval", command_sha256="0f" * 32),
        )
        events = history(alice, run)
        assert [(e["type"], e["data"].get("gate_id")) for e in events[2:]] == [
            ("gate.opened", "t"),
            ("gate.opened", "q"),
            ("gate.opened", "s"),
            ("gate.resolved", "t"),
        ]
        auto = events[-1]
        assert auto["sequence"] == batch["sequence"] and auto["actor"] == "auto-approve"
        assert auto["data"]["reason"] == "auto_approve_tools"
        assert auto["data"]["decision"] == "approve"
        assert gates_of(alice, run, batch["position"]) == ["q", "s"]
        assert heartbeat(runner, lease)["gates"] == [
            {"gate_id": "t", "decision": "approve", "answer": None, "scope": "once"}
        ]


def test_a_scope_run_approval_approves_the_tools_later_gates(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run, lease = started(alice, runner)
        token = lease["fencing_token"]
        append(runner, run, token, opened("t1", "tool_approval", tool="bash"))
        ok(resolve(alice, run, "t1", decision="approve", scope="run"))

        later = append(
            runner,
            run,
            token,
            opened("t2", "tool_approval", tool="bash"),
            opened("e1", "tool_approval", tool="edit"),
            opened("s1", "shell_approval", tool="bash"),
        )
        resolved = [e for e in history(alice, run) if e["type"] == "gate.resolved"]
        assert [(e["actor"], e["data"]["gate_id"], e["data"]["reason"]) for e in resolved] == [
            ("alice", "t1", None),
            ("auto-approve", "t2", "scope_run"),
        ]
        assert gates_of(alice, run, later["position"]) == ["e1", "s1"]


def test_the_auto_approve_toggle_on_a_live_run(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run, lease = started(alice, runner)
        append(
            runner,
            run,
            lease["fencing_token"],
            opened("t", "tool_approval"),
            opened("q", "question"),
        )

        on = ok(alice.post(f"/api/runs/{run}/auto-approve", json={"enabled": True}))
        assert on["auto_approve_tools"] is True and on["status"] == "in_progress", on
        types = [e["type"] for e in history(alice, run)[-2:]]
        assert types == ["run.option_changed", "gate.resolved"]  # the open tool gate, at once
        view = read_run(alice, run, on["position"])
        assert view["auto_approve_tools"] is True
        assert [g["gate_id"] for g in view["open_gates"]] == ["q"]

        again = ok(alice.post(f"/api/runs/{run}/auto-approve", json={"enabled": True}))
        assert (again["sequence"], again["position"]) == (on["sequence"], on["position"])

        off = ok(alice.post(f"/api/runs/{run}/auto-approve", json={"enabled": False}))
        assert off["sequence"] == on["sequence"] + 1
        assert history(alice, run)[-1]["data"] == {"auto_approve_tools": False}
        assert read_run(alice, run, off["position"])["auto_approve_tools"] is False

        ok(alice.post(f"/api/runs/{run}/cancel", json={}))
        before = last_sequence(alice, run)
        conflict(alice.post(f"/api/runs/{run}/auto-approve", json={"enabled": True}), "cancelled")
        assert last_sequence(alice, run) == before


def test_a_gate_resolution_with_an_idempotency_key_is_answered_again_not_refused(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run, lease = started(alice, runner)
        append(runner, run, lease["fencing_token"], opened("t", "tool_approval"))
        key = {"Idempotency-Key": "gate-t"}
        path = f"/api/runs/{run}/gates/t"
        first = alice.post(path, json={"decision": "approve"}, headers=key)
        again = alice.post(path, json={"decision": "approve"}, headers=key)
        assert (again.status_code, again.json()) == (200, ok(first))
        assert again.headers["idempotent-replayed"] == "true"
        assert [e["type"] for e in history(alice, run)].count("gate.resolved") == 1
