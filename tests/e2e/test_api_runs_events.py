"""Run events over real HTTP, per API.md: event pages (JSON and NDJSON), the global log, and
the run and global SSE streams.

Each test gets its own server (the `server` fixture, on SQLite and on PostgreSQL), so claims
are deterministic: the runner always gets the oldest claimable run.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx

from tests.e2e.runs_helpers import append, claim, history, log, ok, sse, submit
from tests.support import ALICE, RUNNER, Server

AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
ENVELOPE_KEYS = {
    "run_id",
    "sequence",
    "position",
    "type",
    "at",
    "actor",
    "data",
    "prev_hash",
    "hash",
}
HEX_HASH = re.compile(r"^[0-9a-f]{64}$")


def check_envelope(event: dict[str, Any]) -> None:
    """The event envelope has exactly the contract's fields, in the contract's formats."""
    assert set(event) == ENVELOPE_KEYS, event
    uuid.UUID(event["run_id"])
    assert isinstance(event["sequence"], int) and event["sequence"] >= 1, event
    assert isinstance(event["position"], int) and event["position"] >= 1, event
    assert isinstance(event["type"], str) and event["type"], event
    assert AT.match(event["at"]), event
    assert isinstance(event["actor"], str) and event["actor"], event
    assert isinstance(event["data"], dict), event
    assert HEX_HASH.match(event["prev_hash"]) and HEX_HASH.match(event["hash"]), event


def frames_to_end(client: httpx.Client, path: str, **kwargs: Any) -> list[dict[str, str]]:
    """Every frame of a stream the server closes (a finished run's)."""
    with sse(client, path, **kwargs) as (_, frames):
        return list(frames)


def assert_sse_headers(response: httpx.Response) -> None:
    """The contract's SSE headers."""
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    assert "no-cache" in response.headers.get("cache-control", ""), response.headers
    assert response.headers.get("x-accel-buffering") == "no", response.headers


def assert_done(frame: dict[str, str]) -> None:
    """The closing `done` frame: data `{}` and no id."""
    assert frame.get("event") == "done", frame
    assert json.loads(frame["data"]) == {}, frame
    assert "id" not in frame, frame


# -- event history ------------------------------------------------------------------------------


def test_run_events_page_by_sequence_and_stream_whole_as_ndjson(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice, task="chatty")["run_id"]
        token = claim(runner, run)["fencing_token"]
        for batch in range(3):
            deltas = [
                {"type": "agent.message.delta", "data": {"text": f"{batch}-{i}"}}
                for i in range(400)
            ]
            append(runner, run, token, *deltas)
        last = ok(alice.post(f"/api/runs/{run}/cancel", json={"reason": "quiet"}))["sequence"]
        assert last == 1 + 1 + 1200 + 1

        path = f"/api/runs/{run}/events"
        default = ok(alice.get(path))
        assert [e["sequence"] for e in default["events"]] == list(range(1, 101))
        assert default["last_sequence"] == last
        small = ok(alice.get(path, params={"after": 10, "limit": 5}))
        assert [e["sequence"] for e in small["events"]] == [11, 12, 13, 14, 15]
        big = ok(alice.get(path, params={"after": 0, "limit": 1000}))
        rest = ok(alice.get(path, params={"after": 1000, "limit": 1000}))
        events = big["events"] + rest["events"]
        assert [e["sequence"] for e in events] == list(range(1, last + 1))
        for after in (last, last + 500):
            beyond = ok(alice.get(path, params={"after": after}))
            assert (beyond["events"], beyond["last_sequence"]) == ([], last)

        for event in events:
            check_envelope(event)
            assert event["run_id"] == run
        positions = [e["position"] for e in events]
        assert positions == sorted(set(positions))
        assert (events[0]["type"], events[0]["actor"]) == ("run.submitted", "alice")
        assert events[0]["data"]["task"] == "chatty"
        assert events[2]["type"] == "agent.message.delta"
        assert events[2]["data"] == {"text": "0-0"}
        assert (events[-1]["type"], events[-1]["actor"]) == ("run.cancelled", "alice")

        with alice.stream("GET", path, headers={"Accept": "application/x-ndjson"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = [line for line in response.iter_lines() if line]
        assert [json.loads(line) for line in lines] == events


def test_the_global_log_filters_by_type_prefix_exact_type_and_run(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        first = submit(alice, task="first")["run_id"]
        token = claim(runner, first)["fencing_token"]
        append(
            runner,
            first,
            token,
            {"type": "agent.message", "data": {"text": "hello"}},
            {"type": "agent.message.delta", "data": {"text": "hel"}},
            log("a log line"),
            {"type": "step.started", "data": {}},
        )
        ok(alice.post(f"/api/runs/{first}/cancel", json={}))
        second = submit(alice, task="second")["run_id"]
        ok(alice.post(f"/api/runs/{second}/cancel", json={}))

        everything = ok(alice.get("/api/events", params={"limit": 1000}))["events"]
        assert [(e["run_id"], e["type"]) for e in everything] == [
            (first, "run.submitted"),
            (first, "run.claimed"),
            (first, "agent.message"),
            (first, "agent.message.delta"),
            (first, "log"),
            (first, "step.started"),
            (first, "run.cancelled"),
            (second, "run.submitted"),
            (second, "run.cancelled"),
        ]
        for event in everything:
            check_envelope(event)
        positions = [e["position"] for e in everything]
        assert positions == sorted(set(positions))

        def only(**params: Any) -> list[dict[str, Any]]:
            return list(ok(alice.get("/api/events", params=params))["events"])

        assert only(type="run.*") == [e for e in everything if e["type"].startswith("run.")]
        assert only(type="agent.message") == [everything[2]]
        assert only(type="agent.*") == everything[2:4]
        assert only(type=["agent.message", "log"]) == [everything[2], everything[4]]
        assert only(type="review.*") == []
        assert only(run_id=second) == everything[7:]
        assert only(run_id=second, type="run.cancelled") == [everything[8]]
        assert only(after=positions[3]) == everything[4:]

        paged, after = [], 0
        while True:
            body = ok(alice.get("/api/events", params={"after": after, "limit": 2}))
            if not body["events"]:
                break
            assert len(body["events"]) <= 2
            paged += body["events"]
            after = body["last_position"]
        assert paged == everything


# -- streams ------------------------------------------------------------------------------------


def test_a_finished_runs_stream_replays_from_the_resume_point_then_done(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice)["run_id"]
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, log("one"), log("two"), log("three"))
        ok(alice.post(f"/api/runs/{run}/cancel", json={}))
        events = history(alice, run)
        assert len(events) == 6
        path = f"/api/runs/{run}/stream"

        with sse(alice, path) as (response, frames):
            assert_sse_headers(response)
            received = list(frames)
        assert [f["id"] for f in received[:-1]] == [str(e["sequence"]) for e in events]
        assert [f["event"] for f in received[:-1]] == [e["type"] for e in events]
        assert [json.loads(f["data"]) for f in received[:-1]] == events
        assert_done(received[-1])

        def ids(frames: list[dict[str, str]]) -> list[int]:
            assert_done(frames[-1])
            return [int(f["id"]) for f in frames[:-1]]

        assert ids(frames_to_end(alice, path, params={"after": 2})) == [3, 4, 5, 6]
        header_wins = frames_to_end(
            alice, path, params={"after": 1}, headers={"Last-Event-ID": "4"}
        )
        assert ids(header_wins) == [5, 6]
        # A client that has the last event of a finished run (it was sent `done`) is told
        # to stop: 204, which ends an EventSource's reconnecting.
        for resume in ({"headers": {"Last-Event-ID": "6"}}, {"params": {"after": 100}}):
            stop = alice.get(path, **resume)  # type: ignore[arg-type]
            assert stop.status_code == 204, (resume, stop.status_code, stop.text)
            assert stop.content == b""
        assert ids(frames_to_end(alice, path, headers={"Last-Event-ID": "5"})) == [6]


def test_a_live_runs_stream_follows_new_events_until_the_run_ends(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice)["run_id"]
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, log("before connecting"))
        with sse(alice, f"/api/runs/{run}/stream") as (response, frames):
            assert_sse_headers(response)
            assert [next(frames)["id"] for _ in range(3)] == ["1", "2", "3"]
            append(runner, run, token, log("live 1"), log("live 2"))
            live = [next(frames) for _ in range(2)]
            assert [(f["id"], f["event"]) for f in live] == [("4", "log"), ("5", "log")]
            assert json.loads(live[1]["data"])["data"] == {"line": "live 2"}
            ok(alice.post(f"/api/runs/{run}/cancel", json={}))
            rest = list(frames)  # the server closes the stream after `done`
        assert [(f.get("id"), f["event"]) for f in rest[:-1]] == [("6", "run.cancelled")]
        assert_done(rest[-1])


def test_the_global_stream_resumes_by_position_and_follows_live_events(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice)["run_id"]
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, log("a"), log("b"))
        events = ok(alice.get("/api/events"))["events"]
        assert len(events) == 4
        positions = [e["position"] for e in events]

        resume = {"Last-Event-ID": str(positions[1])}
        with sse(alice, "/api/events/stream", params={"after": 0}, headers=resume) as (
            response,
            frames,
        ):
            assert_sse_headers(response)
            replayed = [next(frames) for _ in range(2)]
            assert [int(f["id"]) for f in replayed] == positions[2:]
            assert [json.loads(f["data"]) for f in replayed] == events[2:]
            appended = append(runner, run, token, log("live"))
            live = next(frames)
            assert (int(live["id"]), live["event"]) == (appended["position"], "log")
            assert json.loads(live["data"])["sequence"] == appended["sequence"]

        with sse(alice, "/api/events/stream", params={"type": "run.*"}) as (_, frames):
            first_two = [next(frames) for _ in range(2)]
        assert [f["event"] for f in first_two] == ["run.submitted", "run.claimed"]
