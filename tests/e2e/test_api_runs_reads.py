"""Reading runs over real HTTP, per API.md: ownership, listings and cursor paging, history
(`at_sequence`) and deletion.

Each test gets its own server (the `server` fixture, on SQLite and on PostgreSQL), so claims
are deterministic: the runner always gets the oldest claimable run.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.e2e.runs_helpers import (
    STREAM_TIMEOUT,
    append,
    claim,
    error,
    last_sequence,
    list_runs,
    log,
    ok,
    read_run,
    run_ids,
    sse,
    submit,
)
from tests.support import ALICE, BOB, RUNNER, Server


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
    ("POST", "/gates/g1", {"json": {"decision": "approve"}}),
    ("POST", "/auto-approve", {"json": {"enabled": True}}),
    ("POST", "/steer", {"json": {"kind": "stop", "instruction": "mine now"}}),
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


def test_a_listing_read_again_shows_every_change_of_its_owner_at_once(server: Server) -> None:
    """Pages are kept in memory between reads (projections/run_documents.py): a page read
    again after the owner's own change, with its position, shows the change; another user's
    changes leave it as it was."""
    with server.client(ALICE) as alice, server.client(BOB) as bob:
        ids = [submit(alice, task=f"run {i}")["run_id"] for i in range(3)]
        position = submit(alice, task="last")["position"]
        first = list_runs(alice, position, limit=2)
        assert ok(first) == ok(alice.get("/api/runs", params={"limit": 2}))  # kept, the same
        theirs = submit(bob, task="bob's")
        again = list_runs(alice, theirs["position"], limit=2)
        assert ok(again) == ok(first)
        for run_id in ids:
            answer = ok(alice.post(f"/api/runs/{run_id}/cancel", json={}))
            statuses = {
                item["run_id"]: item["status"]
                for item in ok(list_runs(alice, answer["position"], limit=10))["items"]
            }
            assert statuses[run_id] == "cancelled"  # never the page from before
        deleted = ids[0]
        alice.delete(f"/api/runs/{deleted}")
        later = submit(alice, task="after the delete")
        assert deleted not in run_ids(list_runs(alice, later["position"], limit=10))
