"""The reference runner's gate protocol (adapters/runner_gates.py, README "Gates from an
agent"): an agent writes a JSON line to the pipe in RUNLEDGER_GATE_REQUESTS, the runner
opens the gate on the run, waits for its resolution, acknowledges it, and writes it back as
one JSON line to the pipe in RUNLEDGER_GATE_RESPONSES.

A real server (the `server` fixture, on SQLite and on PostgreSQL) and a real runner process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.runner_helpers import runner, wait_for_status
from tests.e2e.runs_helpers import history, ok, read_run
from tests.support import ALICE, Server

AGENTS = Path(__file__).parent / "agents"
# A Python agent: sends each of its arguments as a request line, one at a time, and prints
# each reply it reads back.
ASKER = f"""{sys.executable} -c '
import os, sys
for request in sys.argv[1:]:
    with open(os.environ["RUNLEDGER_GATE_REQUESTS"], "w") as pipe:
        pipe.write(request + "\\n")
    with open(os.environ["RUNLEDGER_GATE_RESPONSES"]) as pipe:
        print("reply:", pipe.readline().strip(), flush=True)
'"""


def submit(alice: httpx.Client, **body: Any) -> str:
    """A run submitted, and in the read model: its id."""
    answer = ok(alice.post("/api/runs", json=body), 202)
    read_run(alice, answer["run_id"], answer["position"])
    return str(answer["run_id"])


def open_gates(alice: httpx.Client, run_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The run's open gates, once there are `count` of them."""
    deadline = time.monotonic() + 30
    while True:
        gates = list(read_run(alice, run_id, 0)["open_gates"])
        if len(gates) >= count:
            return gates
        assert time.monotonic() < deadline, f"no {count} open gates on {run_id}"
        time.sleep(0.05)


def replies(alice: httpx.Client, run_id: str) -> list[Any]:
    """What the agent printed after `reply: `, decoded."""
    return [
        json.loads(e["data"]["text"].removeprefix("reply: "))
        for e in history(alice, run_id)
        if e["type"] == "tool.output" and e["data"]["text"].startswith("reply: ")
    ]


def test_an_agent_asks_a_question_and_gets_the_answer_through_the_runner(
    server: Server, tmp_path: Path
) -> None:
    command = f"sh {AGENTS / 'ask.sh'}"
    with server.client(ALICE) as alice:
        with runner(server, tmp_path / "work", command, log=tmp_path / "log"):
            run_id = submit(alice, task="set it up")
            [gate] = open_gates(alice, run_id)
            assert (gate["kind"], gate["prompt"]) == ("question", "Which database?")
            gate_id = gate["gate_id"]

            body = {"decision": "answer", "answer": "PostgreSQL, version 15"}
            ok(alice.post(f"/api/runs/{run_id}/gates/{gate_id}", json=body))
            wait_for_status(alice, run_id, "completed")

        assert replies(alice, run_id) == [
            {
                "gate_id": gate_id,
                "decision": "answer",
                "answer": "PostgreSQL, version 15",
                "scope": "once",
            }
        ]
        events = [(e["type"], e["data"].get("gate_id")) for e in history(alice, run_id)]
        gate_events = [(t, g) for t, g in events if t.startswith("gate.")]
        assert gate_events == [
            ("gate.opened", gate_id),
            ("gate.resolved", gate_id),
            ("gate.acknowledged", gate_id),
        ]
        view = read_run(alice, run_id, 0)
        assert view["open_gates"] == [] and view["status"] == "completed"


def test_a_bad_request_gets_an_error_and_an_auto_approved_tool_gate_its_approval(
    server: Server, tmp_path: Path
) -> None:
    requests = [
        "not json",
        json.dumps({"gate": {"kind": "coffee", "prompt": "?"}}),
        json.dumps({"gate": {"kind": "shell_approval", "command_sha256": "rm -rf /"}}),
        json.dumps({"gate": {"kind": "tool_approval", "tool": "edit", "gate_id": "t1"}}),
        json.dumps({"gate": {"kind": "tool_approval", "tool": "edit", "gate_id": "t1"}}),
    ]
    command = ASKER + " " + " ".join(f"'{r}'" for r in requests)
    with server.client(ALICE) as alice:
        with runner(server, tmp_path / "work", command, log=tmp_path / "log"):
            run_id = submit(alice, task="edit things", auto_approve_tools=True)
            wait_for_status(alice, run_id, "completed")

        got = replies(alice, run_id)
        assert [list(reply) for reply in got[:3]] == [["error"]] * 3
        assert "JSON" in got[0]["error"] and "kind" in got[1]["error"]
        assert "command_sha256" in got[2]["error"]
        assert got[3] == {"gate_id": "t1", "decision": "approve", "answer": None, "scope": "once"}
        assert "used already" in got[4]["error"]
        gate_events = [e for e in history(alice, run_id) if e["type"].startswith("gate.")]
        assert [(e["type"], e["actor"]) for e in gate_events] == [
            ("gate.opened", "runner-1"),
            ("gate.resolved", "auto-approve"),
            ("gate.acknowledged", "runner-1"),
        ]


def test_without_the_stream_the_answer_comes_with_a_heartbeat(
    store_url: str, tmp_path: Path
) -> None:
    # No stream slot for any key (every stream is 429) and a 3 s lease: heartbeats each second.
    env = {"RUNLEDGER_MAX_STREAMS_PER_KEY": "0", "RUNLEDGER_LEASE_SECONDS": "3"}
    server = Server(store_url, tmp_path / "data", **env).start()
    command = f"sh {AGENTS / 'ask.sh'}"
    try:
        with server.client(ALICE) as alice:
            with runner(server, tmp_path / "work", command, log=tmp_path / "log"):
                run_id = submit(alice, task="t")
                [gate] = open_gates(alice, run_id)
                body = {"decision": "answer", "answer": "SQLite"}
                ok(alice.post(f"/api/runs/{run_id}/gates/{gate['gate_id']}", json=body))
                wait_for_status(alice, run_id, "completed")
            assert [r["answer"] for r in replies(alice, run_id)] == ["SQLite"]
    finally:
        server.kill()
