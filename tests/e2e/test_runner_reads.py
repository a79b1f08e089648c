"""A runner key reads the run it holds the lease of, per API.md "Runners": `GET /api/runs/{id}`,
`/events` and `/stream`, answered as its owner sees them; any other run, and its own once the
lease is gone, is 404 exactly like a run that does not exist.

Each test gets its own server (the `server` fixture, on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.e2e.runs_helpers import STREAM_TIMEOUT, append, claim, log, ok, report, sse, submit
from tests.support import ALICE, OTHER_RUNNER, RUNNER, Server

READS: list[tuple[str, dict[str, Any]]] = [
    ("", {}),
    ("", {"params": {"at_sequence": 1}}),
    ("/events", {}),
    ("/events", {"headers": {"Accept": "application/x-ndjson"}}),
    ("/stream", {}),
]


def answered(client: httpx.Client, path: str, **kwargs: Any) -> tuple[int, Any]:
    """(status, JSON body) of a read; an event stream is only checked to have started."""
    with client.stream("GET", path, timeout=STREAM_TIMEOUT, **kwargs) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, "<stream>"
        body = response.read()
        if response.headers.get("content-type", "").startswith("application/x-ndjson"):
            return response.status_code, [json.loads(line) for line in body.splitlines()]
        return response.status_code, json.loads(body)


def assert_404_like_a_missing_run(client: httpx.Client, run: str) -> None:
    missing = str(uuid.uuid4())
    for suffix, kwargs in READS:
        status, body = answered(client, f"/api/runs/{run}{suffix}", **kwargs)
        want = answered(client, f"/api/runs/{missing}{suffix}", **kwargs)
        assert want[0] == 404 and want[1]["error"] == "not_found", (suffix, want)
        assert (status, body) == want, (suffix, kwargs)


def test_a_runner_reads_the_run_it_holds_as_its_owner_does_and_no_other(server: Server) -> None:
    with (
        server.client(ALICE) as alice,
        server.client(RUNNER) as runner,
        server.client(OTHER_RUNNER) as other,
    ):
        held = submit(alice, task="held")["run_id"]
        lease = claim(runner, held)
        waiting = submit(alice, task="waiting")["run_id"]
        written = append(runner, held, lease["fencing_token"], log("working"))

        for suffix, kwargs in READS:
            path = f"/api/runs/{held}{suffix}"
            if not kwargs and suffix == "":  # the read model, once it has the output
                kwargs = {"params": {"min_position": written["position"]}}
            mine = answered(runner, path, **kwargs)
            assert mine[0] == 200, (suffix, mine)
            assert mine == answered(alice, path, **kwargs), suffix
        with sse(runner, f"/api/runs/{held}/stream") as (_, frames):
            types = [json.loads(next(frames)["data"])["type"] for _ in range(3)]
        assert types == ["run.submitted", "run.claimed", "log"]

        assert_404_like_a_missing_run(runner, waiting)
        assert_404_like_a_missing_run(other, held)

        # Once the lease is gone (here: the run's outcome was reported), so is the right.
        report(runner, held, lease["fencing_token"], "no_changes")
        assert_404_like_a_missing_run(runner, held)
        assert ok(alice.get(f"/api/runs/{held}/events"))["last_sequence"] == 4


def test_a_runner_key_still_may_not_command_the_run_it_holds(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        held = submit(alice)["run_id"]
        claim(runner, held)
        for path, body in [
            ("/cancel", {}),
            ("/steer", {"kind": "stop", "instruction": "x"}),
            ("/auto-approve", {"enabled": True}),
            ("/gates/g1", {"decision": "approve"}),
        ]:
            refused = runner.post(f"/api/runs/{held}{path}", json=body)
            assert refused.status_code == 403, (path, refused.text)
        assert runner.get("/api/runs").status_code == 403
        assert runner.get("/api/events").status_code == 403
