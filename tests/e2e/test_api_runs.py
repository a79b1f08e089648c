"""Runs over real HTTP, per API.md: ownership, state conflicts, fencing, idempotency, listings,
history (`at_sequence`), deletion, event pages (JSON and NDJSON), the global log and SSE.

Each test gets its own server (the `server` fixture, on SQLite and on PostgreSQL), so claims
are deterministic: the runner always gets the oldest claimable run.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support import ALICE, BOB, RUNNER, Server

AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
ENVELOPE_KEYS = {"run_id", "sequence", "position", "type", "at", "actor", "data"}
STREAM_TIMEOUT = httpx.Timeout(30, read=10)  # a stream that goes quiet fails, never hangs


# -- helpers ------------------------------------------------------------------------------------


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON answer of a request that must succeed with `status`."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:500]}"
    return response.json() if response.content else None


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The JSON error body of a request that must fail with `status` and `code`."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:500]}"
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def conflict(response: httpx.Response, current: str) -> None:
    """409 conflict naming the run's current status."""
    body = error(response, 409, "conflict")
    assert body["status"] == current, body


def submit(client: httpx.Client, **body: Any) -> dict[str, Any]:
    """Submit a run (202) and return the answer."""
    body.setdefault("task", "do the thing")
    answer = ok(client.post("/api/runs", json=body), 202)
    assert answer["status"] == "pending" and answer["sequence"] == 1, answer
    assert isinstance(answer["position"], int), answer
    return answer


def claim(runner: httpx.Client, run_id: str) -> dict[str, Any]:
    """Claim the oldest claimable run, which must be `run_id`; returns the lease."""
    lease = ok(runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 10}))
    assert lease["run"]["run_id"] == run_id, lease
    return lease


def append(runner: httpx.Client, run_id: str, token: int, *events: dict[str, Any]) -> Any:
    """Append runner events under a lease (200)."""
    body = {"fencing_token": token, "events": list(events)}
    return ok(runner.post(f"/api/runs/{run_id}/events", json=body))


def log(line: str) -> dict[str, Any]:
    """A runner `log` event."""
    return {"type": "log", "data": {"line": line}}


def report(runner: httpx.Client, run_id: str, token: int, outcome: str, **extra: Any) -> Any:
    """Report an outcome under a lease (200)."""
    body = {"fencing_token": token, "outcome": outcome, **extra}
    return ok(runner.post(f"/api/runs/{run_id}/report", json=body))


def history(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """Every event of a run, paging the JSON endpoint."""
    events: list[dict[str, Any]] = []
    while True:
        page = ok(
            client.get(f"/api/runs/{run_id}/events", params={"after": len(events), "limit": 1000})
        )
        events += page["events"]
        if not page["events"]:
            return events


def last_sequence(client: httpx.Client, run_id: str) -> int:
    """A run's last sequence from its history (not a read model)."""
    page = ok(client.get(f"/api/runs/{run_id}/events", params={"after": 10**6, "limit": 1}))
    return int(page["last_sequence"])


def read_run(client: httpx.Client, run_id: str, position: int) -> dict[str, Any]:
    """The run's read model once it includes `position`."""
    return dict(ok(client.get(f"/api/runs/{run_id}", params={"min_position": position})))


def list_runs(client: httpx.Client, position: int, **params: Any) -> httpx.Response:
    """GET /api/runs once the read models include `position`."""
    return client.get("/api/runs", params={"min_position": position, **params})


def run_ids(response: httpx.Response) -> list[str]:
    """The run ids of a listing, in order."""
    return [item["run_id"] for item in ok(response)["items"]]


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


def sse_frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The raw SSE frames (field -> value) as they arrive; comments (pings) are skipped.

    Parsed by hand because SSE clients carry the last `id` over to frames that have none.
    """
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = (
                f"{fields[name]}\n{value}" if name == "data" and name in fields else value
            )


@contextmanager
def sse(
    client: httpx.Client, path: str, **kwargs: Any
) -> Iterator[tuple[httpx.Response, Iterator[dict[str, str]]]]:
    """An open SSE response (which must be a 200 stream) and its frames."""
    with client.stream("GET", path, timeout=STREAM_TIMEOUT, **kwargs) as response:
        if response.status_code != 200:
            response.read()
        assert response.status_code == 200, f"{response.status_code} {response.text[:300]}"
        yield response, sse_frames(response)


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


def status_and_body(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """(status, JSON body or None) without ever waiting on an event stream."""
    with client.stream(method, path, timeout=STREAM_TIMEOUT, **kwargs) as response:
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.status_code, json.loads(response.read())
        return response.status_code, None


RUN_PROBES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "", {"params": {"min_position": "{position}"}}),
    ("GET", "", {"params": {"at_sequence": 1}}),
    ("GET", "/events", {}),
    ("GET", "/events", {"headers": {"Accept": "application/x-ndjson"}}),
    ("GET", "/stream", {}),
    ("POST", "/pause", {}),
    ("POST", "/resume", {}),
    ("POST", "/cancel", {"json": {"reason": "mine now"}}),
    ("POST", "/review", {"json": {"approved": True}}),
    ("POST", "/review", {"json": {"approved": False, "request_changes": True}}),
    ("POST", "/archive", {}),
    ("POST", "/retry", {}),
    ("DELETE", "", {}),
]


def assert_404_like_a_missing_run(client: httpx.Client, run_id: str, position: int) -> None:
    """Every run endpoint answers 404 for `run_id` with the same body as for a missing id.

    The read-model read waits for `position` (a delete answers 204 with no position, so the
    caller passes the position of a later command).
    """
    missing = str(uuid.uuid4())
    for method, suffix, template in RUN_PROBES:
        kwargs = {**template}
        if "params" in kwargs:
            kwargs["params"] = {
                k: position if v == "{position}" else v for k, v in kwargs["params"].items()
            }
        label = f"{method} /api/runs/{{id}}{suffix} {kwargs}"
        status, body = status_and_body(client, method, f"/api/runs/{run_id}{suffix}", **kwargs)
        want_status, want_body = status_and_body(
            client, method, f"/api/runs/{missing}{suffix}", **kwargs
        )
        assert want_status == 404 and want_body["error"] == "not_found", (label, want_body)
        assert (status, body) == (want_status, want_body), label


# -- ownership ----------------------------------------------------------------------------------


def test_another_users_run_is_404_everywhere_and_never_in_their_reads(server: Server) -> None:
    with (
        server.client(ALICE) as alice,
        server.client(BOB) as bob,
        server.client(RUNNER) as runner,
    ):
        run = submit(alice, task="alice's secret task")["run_id"]
        lease = claim(runner, run)
        append(runner, run, lease["fencing_token"], log("alice's secret output"))
        before = last_sequence(alice, run)

        mine = submit(bob, task="bob's own task")
        position = mine["position"]
        assert_404_like_a_missing_run(bob, run, position)
        assert last_sequence(alice, run) == before
        assert read_run(alice, run, position)["status"] == "in_progress"

        assert run_ids(list_runs(bob, position)) == [mine["run_id"]]
        assert run_ids(list_runs(bob, position, archived="true")) == [mine["run_id"]]
        assert run_ids(list_runs(bob, position, parent_run_id=run)) == []
        bobs_events = ok(bob.get("/api/events", params={"limit": 1000}))["events"]
        assert bobs_events and {e["run_id"] for e in bobs_events} == {mine["run_id"]}
        for params in ({"run_id": run}, {"type": "log"}, {"type": "run.*", "run_id": run}):
            assert ok(bob.get("/api/events", params=params))["events"] == [], params

        # Bob's global stream, from the very start, reaches his own event with nothing before.
        with sse(bob, "/api/events/stream", params={"after": 0}) as (_, frames):
            for frame in frames:
                assert json.loads(frame["data"])["run_id"] == mine["run_id"], frame
                break

        # A parent run that is someone else's is refused exactly like one that does not exist.
        theirs = bob.post("/api/runs", json={"task": "child", "parent_run_id": run})
        absent = bob.post("/api/runs", json={"task": "child", "parent_run_id": str(uuid.uuid4())})
        assert 400 <= absent.status_code < 500, absent.text
        assert (theirs.status_code, theirs.json()) == (absent.status_code, absent.json())
        assert run_ids(list_runs(bob, position)) == [mine["run_id"]]


# -- conflicts and fencing ----------------------------------------------------------------------


def test_commands_in_the_wrong_state_are_409_conflict_with_the_current_status(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice)["run_id"]
        path = f"/api/runs/{run}"
        conflict(alice.post(f"{path}/pause"), "pending")
        conflict(alice.post(f"{path}/resume"), "pending")
        conflict(alice.post(f"{path}/review", json={"approved": True}), "pending")
        conflict(alice.post(f"{path}/retry"), "pending")

        claim(runner, run)
        conflict(alice.post(f"{path}/resume"), "in_progress")
        conflict(alice.post(f"{path}/review", json={"approved": False}), "in_progress")
        conflict(alice.post(f"{path}/retry"), "in_progress")

        paused = ok(alice.post(f"{path}/pause"))
        assert paused["run_id"] == run and paused["status"] == "paused", paused
        assert paused["sequence"] == 3 and isinstance(paused["position"], int), paused
        conflict(alice.post(f"{path}/pause"), "paused")
        conflict(alice.post(f"{path}/review", json={"approved": True}), "paused")
        assert ok(alice.post(f"{path}/resume"))["status"] == "in_progress"

        assert ok(alice.post(f"{path}/cancel", json={"reason": "enough"}))["status"] == "cancelled"
        conflict(alice.post(f"{path}/cancel", json={}), "cancelled")
        conflict(alice.post(f"{path}/pause"), "cancelled")
        conflict(alice.post(f"{path}/resume"), "cancelled")
        conflict(alice.post(f"{path}/review", json={"approved": True}), "cancelled")
        conflict(alice.post(f"{path}/retry"), "cancelled")
        events = history(alice, run)
        assert [e["type"] for e in events] == [
            "run.submitted",
            "run.claimed",
            "run.paused",
            "run.resumed",
            "run.cancelled",
        ]


def test_a_stale_fencing_token_is_409_stale_lease_and_appends_nothing(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        cancelled = submit(alice)["run_id"]
        token = claim(runner, cancelled)["fencing_token"]
        append(runner, cancelled, token, log("working"))
        ok(alice.post(f"/api/runs/{cancelled}/cancel", json={"reason": "changed my mind"}))
        before = last_sequence(alice, cancelled)
        late_events = {"fencing_token": token, "events": [log("still working")]}
        late_report = {"fencing_token": token, "outcome": "changes", "tree_hash": "abc"}
        error(runner.post(f"/api/runs/{cancelled}/events", json=late_events), 409, "stale_lease")
        error(runner.post(f"/api/runs/{cancelled}/report", json=late_report), 409, "stale_lease")
        assert last_sequence(alice, cancelled) == before

        run = submit(alice)["run_id"]
        token = claim(runner, run)["fencing_token"]
        future = {"fencing_token": token + 1, "events": [log("from nowhere")]}
        error(runner.post(f"/api/runs/{run}/events", json=future), 409, "stale_lease")
        report(runner, run, token, "no_changes")
        before = last_sequence(alice, run)
        again = {"fencing_token": token, "outcome": "no_changes"}
        error(runner.post(f"/api/runs/{run}/report", json=again), 409, "stale_lease")
        after = {"fencing_token": token, "events": [log("after the report")]}
        error(runner.post(f"/api/runs/{run}/events", json=after), 409, "stale_lease")
        assert last_sequence(alice, run) == before


def test_review_decisions_take_effect_once_and_repeats_append_nothing(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice, task="make it faster")["run_id"]
        first = claim(runner, run)
        stats = {"files": 2, "added": 10, "removed": 4}
        reported = report(
            runner, run, first["fencing_token"], "changes", tree_hash="t1", diff_stats=stats
        )
        assert reported["status"] == "awaiting_review"

        changes = {"approved": False, "request_changes": True, "comment": "use a lock"}
        sent_back = ok(alice.post(f"/api/runs/{run}/review", json=changes))
        assert sent_back["status"] == "in_progress", sent_back
        view = read_run(alice, run, sent_back["position"])
        assert view["revision"] == 1 and view["review"]["decision"] == "changes_requested"
        assert view["review"]["comment"] == "use a lock" and view["review"]["reviewer"] == "alice"
        repeat = ok(alice.post(f"/api/runs/{run}/review", json=changes))
        assert repeat["status"] == "in_progress" and repeat["sequence"] == sent_back["sequence"]
        assert last_sequence(alice, run) == sent_back["sequence"]

        old = {"fencing_token": first["fencing_token"], "events": [log("old lease")]}
        error(runner.post(f"/api/runs/{run}/events", json=old), 409, "stale_lease")
        second = claim(runner, run)
        assert second["fencing_token"] > first["fencing_token"]
        assert second["run"]["revision"] == 1 and second["run"]["comment"] == "use a lock"
        report(runner, run, second["fencing_token"], "changes", tree_hash="t2")

        approved = ok(alice.post(f"/api/runs/{run}/review", json={"approved": True}))
        assert approved["status"] == "merged", approved  # no repository: nothing to merge
        repeat = ok(alice.post(f"/api/runs/{run}/review", json={"approved": True}))
        assert repeat["status"] == "merged" and repeat["sequence"] == approved["sequence"]
        view = read_run(alice, run, approved["position"])
        assert view["status"] == "merged" and view["merge_result"] is None
        assert view["review"]["decision"] == "approved" and view["tree_hash"] == "t2"
        types = [e["type"] for e in history(alice, run)]
        assert types[-2:] == ["review.approved", "merge.completed"]
        assert len(types) == approved["sequence"]

        declined_run = submit(alice, task="rewrite it in a weekend")["run_id"]
        token = claim(runner, declined_run)["fencing_token"]
        report(runner, declined_run, token, "changes")
        declined = ok(alice.post(f"/api/runs/{declined_run}/review", json={"approved": False}))
        assert declined["status"] == "declined"
        repeat = ok(alice.post(f"/api/runs/{declined_run}/review", json={"approved": False}))
        assert repeat["status"] == "declined" and repeat["sequence"] == declined["sequence"]
        assert last_sequence(alice, declined_run) == declined["sequence"]

        # A different decision once one took effect is a conflict.
        conflict(
            alice.post(f"/api/runs/{declined_run}/review", json={"approved": True}), "declined"
        )
        conflict(alice.post(f"/api/runs/{run}/review", json={"approved": False}), "merged")
        conflict(alice.post(f"/api/runs/{run}/review", json=changes), "merged")


def test_retry_starts_a_linked_run_only_from_failed_and_leaves_the_source_alone(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        source = submit(alice, task="flaky work", agent="claude", max_attempts=2)["run_id"]
        token = claim(runner, source)["fencing_token"]
        failure = {"category": "agent", "message": "the agent gave up"}
        failed = report(runner, source, token, "failed", failure=failure)
        assert failed["status"] == "failed"
        before = read_run(alice, source, failed["position"])
        assert before["failure"] == failure and before["result"] == "failed"
        source_sequence = last_sequence(alice, source)

        retried = ok(alice.post(f"/api/runs/{source}/retry"), 201)
        assert retried["retried_from"] == source and retried["run_id"] != source, retried
        assert isinstance(retried["sequence"], int) and isinstance(retried["position"], int)
        new = read_run(alice, retried["run_id"], retried["position"])
        assert new["status"] == "pending" and new["retried_from"] == source
        assert (new["task"], new["agent"], new["max_attempts"]) == ("flaky work", "claude", 2)
        assert read_run(alice, source, retried["position"]) == before
        assert last_sequence(alice, source) == source_sequence

        conflict(alice.post(f"/api/runs/{retried['run_id']}/retry"), "pending")
        token = claim(runner, retried["run_id"])["fencing_token"]
        report(runner, retried["run_id"], token, "no_changes")
        conflict(alice.post(f"/api/runs/{retried['run_id']}/retry"), "completed")


# -- idempotency --------------------------------------------------------------------------------


def test_an_idempotency_key_replays_the_first_answer_per_user(server: Server) -> None:
    with (
        server.client(ALICE) as alice,
        server.client(BOB) as bob,
        server.client(RUNNER) as runner,
    ):
        # Runner posts: a retried batch or report is not applied twice.
        work = submit(alice, task="runner side")["run_id"]
        token = claim(runner, work)["fencing_token"]
        batch = {"fencing_token": token, "events": [log("once"), log("only once")]}
        key = {"Idempotency-Key": "batch-1"}
        first = runner.post(f"/api/runs/{work}/events", json=batch, headers=key)
        again = runner.post(f"/api/runs/{work}/events", json=batch, headers=key)
        assert (again.status_code, again.json()) == (first.status_code, ok(first))
        outcome = {"fencing_token": token, "outcome": "no_changes"}
        key = {"Idempotency-Key": "report-1"}
        first = runner.post(f"/api/runs/{work}/report", json=outcome, headers=key)
        again = runner.post(f"/api/runs/{work}/report", json=outcome, headers=key)
        assert (again.status_code, again.json()) == (first.status_code, ok(first))
        types = [e["type"] for e in history(alice, work)]
        assert types == ["run.submitted", "run.claimed", "log", "log", "run.completed"]

        # Submitting twice with one key: one run, the same answer, no new events.
        body = {"task": "exactly once"}
        key = {"Idempotency-Key": "submit-1"}
        first = alice.post("/api/runs", json=body, headers=key)
        answer = ok(first, 202)
        mark = answer["position"]
        again = alice.post("/api/runs", json=body, headers=key)
        assert (again.status_code, again.json()) == (202, answer)
        listed = run_ids(list_runs(alice, mark))
        assert listed.count(answer["run_id"]) == 1 and len(listed) == 2
        assert ok(alice.get("/api/events", params={"after": mark}))["events"] == []

        # Another user's key space is their own.
        bobs = ok(bob.post("/api/runs", json=body, headers=key), 202)
        assert bobs["run_id"] != answer["run_id"]
        assert read_run(bob, bobs["run_id"], bobs["position"])["owner"] == "bob"

        # The same key for a different request is refused.
        other = alice.post("/api/runs", json={"task": "something else"}, headers=key)
        error(other, 400, "invalid_request")
        assert ok(alice.get("/api/events", params={"after": mark}))["events"] == []

        # Commands too: a repeated cancel answers like the first, not with a conflict.
        key = {"Idempotency-Key": "cancel-1"}
        path = f"/api/runs/{answer['run_id']}/cancel"
        first = alice.post(path, json={"reason": "r"}, headers=key)
        again = alice.post(path, json={"reason": "r"}, headers=key)
        assert ok(first)["status"] == "cancelled"
        assert (again.status_code, again.json()) == (200, first.json())
        assert last_sequence(alice, answer["run_id"]) == 2


# -- the read side ------------------------------------------------------------------------------


def test_listing_filters_and_cursor_pagination(server: Server) -> None:
    with (
        server.client(ALICE) as alice,
        server.client(BOB) as bob,
        server.client(RUNNER) as runner,
    ):
        runs = [submit(alice, task=f"run {i}") for i in range(7)]
        ids = [r["run_id"] for r in runs]
        submit(bob, task="not alice's")
        position = runs[-1]["position"]

        seen: list[str] = []
        page = list_runs(alice, position, limit=3)
        pages = 0
        late = None
        while True:
            body = ok(page)
            assert int(page.headers["x-position"]) >= position
            assert len(body["items"]) <= 3
            seen += [item["run_id"] for item in body["items"]]
            pages += 1
            if late is None:  # a run submitted mid-way shows neither as a repeat nor a gap
                late = submit(alice, task="submitted while paging")
            if body["next_cursor"] is None:
                break
            page = alice.get("/api/runs", params={"limit": 3, "cursor": body["next_cursor"]})
        assert seen == ids[::-1] and pages == 3

        # Make a mix: in progress, cancelled, archived, a child.
        claim(runner, ids[0])
        ok(alice.post(f"/api/runs/{ids[1]}/cancel", json={}))
        archived = ok(alice.post(f"/api/runs/{ids[2]}/archive"))
        child = submit(alice, task="a child", parent_run_id=ids[0])
        position = max(child["position"], archived["position"])
        everything = [child["run_id"], late["run_id"], *ids[::-1]]

        assert run_ids(list_runs(alice, position)) == [r for r in everything if r != ids[2]]
        assert run_ids(list_runs(alice, position, archived="true")) == everything
        assert read_run(alice, ids[2], position)["archived_at"] is not None
        pending = [r for r in everything if r not in (ids[0], ids[1], ids[2])]
        assert run_ids(list_runs(alice, position, status="pending")) == pending
        both = [r for r in everything if r not in (ids[0], ids[2])]
        assert run_ids(list_runs(alice, position, status=["pending", "cancelled"])) == both
        assert run_ids(list_runs(alice, position, status="in_progress")) == [ids[0]]
        assert run_ids(list_runs(alice, position, status="merged")) == []
        assert run_ids(list_runs(alice, position, parent_run_id=ids[0])) == [child["run_id"]]
        assert read_run(alice, child["run_id"], position)["parent_run_id"] == ids[0]

        # Paging a filtered listing.
        seen, cursor = [], None
        while True:
            params: dict[str, Any] = {"status": "pending", "limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            body = ok(alice.get("/api/runs", params=params))
            seen += [item["run_id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == pending

        # The header form of min_position; every read-model answer carries X-Position.
        by_header = alice.get("/api/runs", headers={"X-Min-Position": str(position)})
        assert ok(by_header) and int(by_header.headers["x-position"]) >= position
        one = alice.get(f"/api/runs/{ids[0]}")
        assert ok(one)["run_id"] == ids[0] and int(one.headers["x-position"]) >= 0
        assert all(item["owner"] == "alice" for item in ok(by_header)["items"])


def test_at_sequence_gives_the_run_as_it_stood_after_that_event(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice)["run_id"]
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, {"type": "step.started", "data": {"step": 1}}, log("step 1"))
        ok(alice.post(f"/api/runs/{run}/pause"))
        ok(alice.post(f"/api/runs/{run}/resume"))
        done = ok(alice.post(f"/api/runs/{run}/cancel", json={"reason": "seen enough"}))
        assert done["sequence"] == 7
        expected = {
            1: ("pending", 0),
            2: ("in_progress", 0),
            3: ("in_progress", 1),
            4: ("in_progress", 1),
            5: ("paused", 1),
            6: ("in_progress", 1),
            7: ("cancelled", 1),
        }
        for sequence, (status, steps) in expected.items():
            then = ok(alice.get(f"/api/runs/{run}", params={"at_sequence": sequence}))
            assert (then["status"], then["step_count"], then["last_sequence"]) == (
                status,
                steps,
                sequence,
            ), then
        latest = ok(alice.get(f"/api/runs/{run}", params={"at_sequence": 7}))
        assert latest == read_run(alice, run, done["position"])
        for past_the_end in (8, 10**6):
            answer = alice.get(f"/api/runs/{run}", params={"at_sequence": past_the_end})
            error(answer, 404, "not_found")
        error(alice.get(f"/api/runs/{uuid.uuid4()}", params={"at_sequence": 1}), 404, "not_found")


def test_a_deleted_run_is_404_everywhere_and_leaves_every_listing(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice, task="to be deleted")["run_id"]
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, log("doomed"))
        finished = submit(alice, task="finished, then deleted")["run_id"]
        ok(alice.post(f"/api/runs/{finished}/cancel", json={}))

        for victim in (run, finished):
            deleted = alice.delete(f"/api/runs/{victim}")
            assert deleted.status_code == 204 and deleted.content == b"", deleted.text
        position = submit(alice, task="still here")["position"]

        for victim in (run, finished):
            assert_404_like_a_missing_run(alice, victim, position)
            for params in ({}, {"archived": "true"}, {"status": "cancelled"}):
                assert victim not in run_ids(list_runs(alice, position, **params)), params
        late = {"fencing_token": token, "events": [log("still here?")]}
        refused = runner.post(f"/api/runs/{run}/events", json=late)
        assert refused.status_code in (404, 409), refused.text


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
        assert ids(frames_to_end(alice, path, headers={"Last-Event-ID": "6"})) == []
        assert ids(frames_to_end(alice, path, params={"after": 100})) == []


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
