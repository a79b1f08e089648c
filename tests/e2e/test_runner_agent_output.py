"""Structured agent output end to end: the reference runner runs a stand-in for `claude` or
`codex` that replays a recorded stream (tests/e2e/agents/replay.sh), reads it with
`--format`, and the run's events, its read model's token totals and `GET …/usage` (by run
and by project, priced by the agent or the operator's price table) show what the agent did
and spent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.coordination_helpers import claim_child, report, set_plan
from tests.e2e.runner_helpers import runner, wait_for_status
from tests.e2e.runs_helpers import history, ok
from tests.support import ALICE, RUNNER, Server, make_repo

AGENTS = Path(__file__).parent / "agents"
REPLAY = str(AGENTS / "replay.sh")
PRICES = {"gpt-5-codex": {"input": 1.25, "output": 10, "cached_input": 0.125}}


@pytest.fixture
def priced(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server with a price table for the codex stand-in's model."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    srv = Server(store_url, tmp_path / "data", RUNLEDGER_PRICES_FILE=str(prices)).start()
    try:
        yield srv
    finally:
        srv.kill()


def types(alice: httpx.Client, run_id: str) -> list[str]:
    return [e["type"] for e in history(alice, run_id)]


def data_of(alice: httpx.Client, run_id: str, kind: str) -> list[dict]:
    return [e["data"] for e in history(alice, run_id) if e["type"] == kind]


def test_claude_and_codex_streams_become_events_and_usage(priced: Server, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with priced.client(ALICE) as alice:
        project = ok(
            alice.post("/api/projects", json={"name": "p", "repository_path": str(repo)}), 201
        )
        project_id = project["project_id"]
        claude_run = ok(
            alice.post(f"/api/projects/{project_id}/runs", json={"task": "shout"}), 202
        )["run_id"]
        with runner(
            priced,
            tmp_path / "w1",
            f"{REPLAY} claude-stream.jsonl",
            "--once",
            "--format",
            "claude-stream-json",
        ):
            wait_for_status(alice, claude_run, "awaiting_review")
        body = {"task": "shout again", "model": "gpt-5-codex"}
        codex_run = ok(alice.post("/api/runs", json=body), 202)["run_id"]
        with runner(
            priced,
            tmp_path / "w2",
            f"{REPLAY} codex-exec.jsonl",
            "--once",
            "--format",
            "codex-json",
        ):
            wait_for_status(alice, codex_run, "completed")

        # The claude run: messages, tool calls and results, turns, usage; stderr stays output.
        seen = types(alice, claude_run)
        for kind in ("agent.message", "tool.call", "tool.result", "usage.reported"):
            assert kind in seen, (kind, seen)
        turns = [d for d in data_of(alice, claude_run, "step.started") if d["name"] == "agent.turn"]
        assert [t["turn"] for t in turns] == [1, 2, 3]
        assert {"stream": "stderr", "text": "a line on stderr"} in data_of(
            alice, claude_run, "tool.output"
        )
        calls = data_of(alice, claude_run, "tool.call")
        assert [c["name"] for c in calls] == ["Bash", "Edit"]

        # Its usage: the agent's own cost, its tokens on the read model too.
        usage = ok(alice.get(f"/api/runs/{claude_run}/usage"))
        (model,) = usage["models"]
        expected = {"input_tokens": 2192, "output_tokens": 117, "cached_input_tokens": 4000}
        assert model == {
            "model": "claude-sonnet-4-5-20250929",
            **expected,
            "cost_usd": 0.0195,
            "cost_source": "agent",
        }
        assert usage["total"] == {**expected, "cost_usd": 0.0195, "cost_source": "agent"}
        run = ok(alice.get(f"/api/runs/{claude_run}"))
        assert {k: run["usage"][k] for k in expected} == expected

        # The codex run: commands as call, output, result; usage priced by the table.
        assert "tool.output" in types(alice, codex_run)
        shell = [c for c in data_of(alice, codex_run, "tool.call") if c["name"] == "shell"]
        assert shell == [
            {"call_id": "item_1", "name": "shell", "input": {"command": "bash -lc 'cat app.py'"}}
        ]
        codex = ok(alice.get(f"/api/runs/{codex_run}/usage"))["total"]
        price = PRICES["gpt-5-codex"]
        cost = (1315 * price["input"] + 132 * price["output"] + 24448 * price["cached_input"]) / 1e6
        assert codex == {
            "input_tokens": 1315,
            "output_tokens": 132,
            "cached_input_tokens": 24448,
            "cost_usd": round(cost, 6),
            "cost_source": "price_table",
        }

        # The project: only the claude run is in it; by model and by day (today, UTC).
        today = datetime.now(UTC).date().isoformat()
        spent = ok(
            alice.get(f"/api/projects/{project_id}/usage", params={"since": today, "until": today})
        )
        assert spent["total"] == usage["total"]
        assert [d["day"] for d in spent["days"]] == [today]
        before = ok(alice.get(f"/api/projects/{project_id}/usage", params={"until": "2000-01-01"}))
        assert before["days"] == [] and before["total"]["input_tokens"] == 0


def test_a_model_without_a_price_has_no_cost(server: Server, tmp_path: Path) -> None:
    with server.client(ALICE) as alice:
        run_id = ok(alice.post("/api/runs", json={"task": "t", "model": "local-llm"}), 202)[
            "run_id"
        ]
        with runner(
            server, tmp_path / "w", f"{REPLAY} codex-exec.jsonl", "--once", "--format", "codex-json"
        ):
            wait_for_status(alice, run_id, "completed")
        total = ok(alice.get(f"/api/runs/{run_id}/usage"))["total"]
        assert (total["cost_usd"], total["cost_source"]) == (None, None)
        assert total["input_tokens"] == 1315


def test_a_coordinators_usage_includes_its_childrens(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner_key:
        coordinator = ok(alice.post("/api/runs", json={"task": "big"}), 202)["run_id"]
        set_plan(alice, coordinator, [{"key": "a", "title": "a"}, {"key": "b", "title": "b"}])
        children = []
        for model, tokens in (("m1", 10), ("m2", 20)):
            lease = claim_child(runner_key)
            assert lease is not None
            child = lease["run"]["run_id"]
            children.append(child)
            reported = {"model": model, "input_tokens": tokens, "output_tokens": 1}
            sent = runner_key.post(
                f"/api/runs/{child}/events",
                json={
                    "fencing_token": lease["fencing_token"],
                    "events": [{"type": "usage.reported", "data": {**reported, "cost_usd": 0.5}}],
                },
            )
            assert sent.status_code == 200, sent.text
            done = report(runner_key, lease, "no_changes")

        usage = ok(
            alice.get(f"/api/runs/{coordinator}/usage", params={"min_position": done["position"]})
        )
        assert [(m["model"], m["input_tokens"]) for m in usage["models"]] == [
            ("m1", 10),
            ("m2", 20),
        ]
        assert usage["total"]["cost_usd"] == 1.0 and usage["total"]["cost_source"] == "agent"
        assert sorted(c["run_id"] for c in usage["children"]) == sorted(children)
        # A child's own usage is its alone.
        one = ok(alice.get(f"/api/runs/{children[0]}/usage"))
        assert one["total"]["input_tokens"] == 10 and "children" not in one
