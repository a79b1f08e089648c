"""Run commands over real HTTP, per API.md: state conflicts, fencing, reviews, retries and
idempotency keys.

Each test gets its own server (the `server` fixture, on SQLite and on PostgreSQL), so claims
are deterministic: the runner always gets the oldest claimable run.
"""

from __future__ import annotations

from tests.e2e.runs_helpers import (
    append,
    claim,
    conflict,
    error,
    history,
    last_sequence,
    list_runs,
    log,
    ok,
    read_run,
    report,
    run_ids,
    submit,
)
from tests.support import ALICE, BOB, RUNNER, Server

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
        late_report = {"fencing_token": token, "outcome": "changes", "tree_hash": "abc1"}
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
            runner, run, first["fencing_token"], "changes", tree_hash="aaaa1111", diff_stats=stats
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
        report(runner, run, second["fencing_token"], "changes", tree_hash="bbbb2222")

        approved = ok(alice.post(f"/api/runs/{run}/review", json={"approved": True}))
        assert approved["status"] == "merged", approved  # no repository: nothing to merge
        repeat = ok(alice.post(f"/api/runs/{run}/review", json={"approved": True}))
        assert repeat["status"] == "merged" and repeat["sequence"] == approved["sequence"]
        view = read_run(alice, run, approved["position"])
        assert view["status"] == "merged" and view["merge_result"] is None
        assert view["review"]["decision"] == "approved" and view["tree_hash"] == "bbbb2222"
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
