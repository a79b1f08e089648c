"""Coordinator runs end to end over HTTP with scripted runners: the plan a, b → c → d is
dispatched in dependency order, fails and recovers by a retry, and with a real git
repository accumulates on the integration branch and merges once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from adapters import git
from tests.e2e.coordination_helpers import (
    DIAMOND,
    claim_child,
    commit_work,
    events_of,
    key_of,
    report,
    set_plan,
    wait_until,
)
from tests.support import ALICE, RUNNER, Server, make_repo


def coordinator(alice: httpx.Client, **body: object) -> str:
    answer = alice.post("/api/runs", json={"task": "build the thing", **body})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


def finish(runner: httpx.Client, alice: httpx.Client, outcomes: dict[str, str]) -> list[str]:
    """Claim children and end each as `outcomes` says (no_changes by default) until none
    is left to claim; the keys in the order they were claimed."""
    done = []
    while (lease := claim_child(runner, wait=3)) is not None:
        key = key_of(alice, lease["run"]["run_id"])
        outcome = outcomes.get(key, "no_changes")
        extra = {"failure": {"category": "agent", "message": "no"}} if outcome == "failed" else {}
        report(runner, lease, outcome, **extra)
        done.append(key)
    return done


def test_the_diamond_plan_dispatches_in_dependency_order_and_awaits_one_review(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = coordinator(alice)
        plan = set_plan(alice, run_id, DIAMOND)
        assert plan["status"] == "planned"
        assert [s["key"] for s in plan["subtasks"]] == ["a", "b", "c", "d"]

        claimed = finish(runner, alice, {})

        assert sorted(claimed[:2]) == ["a", "b"] and claimed[2:] == ["c", "d"]
        run = wait_until(alice, run_id, lambda r: r["status"] == "awaiting_review", "assembly")
        assert run["coordinator_status"] == "awaiting_assembly"
        types = [(e["type"], e["data"].get("key")) for e in events_of(alice, run_id)]
        moves = [t for t in types if t[0].startswith("subtask.")]
        # a and b go out together, before anything completed; c after both, d after c
        assert sorted(moves[:2]) == [("subtask.dispatched", "a"), ("subtask.dispatched", "b")]
        assert moves.index(("subtask.dispatched", "c")) > max(
            moves.index(("subtask.completed", "a")), moves.index(("subtask.completed", "b"))
        )
        assert moves.index(("subtask.dispatched", "d")) > moves.index(("subtask.completed", "c"))
        assert [t for t in moves if t[0] == "subtask.dispatched"].__len__() == 4

        approved = alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "merged"
        work_plan = alice.get(
            f"/api/runs/{run_id}/work-plan", params={"min_position": approved.json()["position"]}
        ).json()
        assert work_plan["status"] == "complete"
        assert {s["status"] for s in work_plan["subtasks"]} == {"completed"}


def test_a_failed_subtask_blocks_its_dependents_and_a_retry_carries_the_plan_on(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = coordinator(alice)
        set_plan(alice, run_id, DIAMOND)

        finish(runner, alice, {"b": "failed"})

        run = wait_until(alice, run_id, lambda r: r["status"] == "failed", "coordinator failed")
        assert run["coordinator_status"] == "failed"
        plan = alice.get(f"/api/runs/{run_id}/work-plan").json()
        statuses = {s["key"]: s["status"] for s in plan["subtasks"]}
        assert statuses == {"a": "completed", "b": "failed", "c": "blocked", "d": "blocked"}

        failed_child = next(s["child_run_id"] for s in plan["subtasks"] if s["key"] == "b")
        retried = alice.post(f"/api/runs/{failed_child}/retry")
        assert retried.status_code == 201, retried.text
        assert retried.json()["retried_from"] == failed_child
        again = alice.post(f"/api/runs/{failed_child}/retry")
        assert again.status_code == 409, again.text  # the subtask has its new child

        assert finish(runner, alice, {}) == ["b", "c", "d"]
        run = wait_until(alice, run_id, lambda r: r["status"] == "awaiting_review", "assembly")
        assert run["coordinator_status"] == "awaiting_assembly"
        children = alice.get(f"/api/runs/{run_id}/children").json()["items"]
        b = next(i for i in children if i["subtask_key"] == "b")
        assert b["child_run_id"] == retried.json()["run_id"]
        assert b["subtask_status"] == "completed"


def test_with_a_repository_children_build_on_each_other_and_the_assembly_merges(
    server: Server, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        project = alice.post("/api/projects", json={"name": "p", "repository_path": str(repo)})
        assert project.status_code == 201, project.text
        answer = alice.post(
            f"/api/projects/{project.json()['project_id']}/runs", json={"task": "build"}
        )
        run_id = answer.json()["run_id"]
        plan = set_plan(alice, run_id, DIAMOND)
        assert plan["integration_branch"] == f"runledger/{run_id}"
        assert git.branch_exists(repo, f"runledger/{run_id}")

        seen: dict[str, list[str]] = {}
        while (lease := claim_child(runner, wait=5)) is not None:
            key = key_of(alice, lease["run"]["run_id"])
            assert lease["run"]["originating_branch"] == f"runledger/{run_id}"
            work = commit_work(repo, tmp_path / "work", lease, key)
            seen[key] = work.pop("files_seen")
            report(runner, lease, "changes", **work)

        assert {"a.txt", "b.txt"} <= set(seen["c"])  # c started from a's and b's work
        run = wait_until(alice, run_id, lambda r: r["status"] == "awaiting_review", "assembly")
        assert run["diff_stats"] == {"files": 4, "added": 4, "removed": 0}
        assert run["tree_hash"] == git.tree_of(repo, f"runledger/{run_id}")
        files = alice.get(f"/api/runs/{run_id}/files").json()["files"]
        assert sorted(f["path"] for f in files) == ["a.txt", "b.txt", "c.txt", "d.txt"]

        approved = alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "merged"
        changed = git.git(repo, "diff", "--name-only", "main~1", "main").split()
        assert sorted(changed) == ["a.txt", "b.txt", "c.txt", "d.txt"]
        assert git.git(repo, "status", "--porcelain") == ""


def test_a_planner_runner_sets_the_plan_with_its_token_and_its_lease_ends(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = coordinator(alice)
        lease = claim_child(runner)
        assert lease is not None and lease["run"]["run_id"] == run_id

        answer = runner.put(
            f"/api/runs/{run_id}/work-plan",
            json={"subtasks": DIAMOND[:2], "fencing_token": lease["fencing_token"]},
        )

        assert answer.status_code == 201, answer.text
        assert [s["key"] for s in answer.json()["subtasks"]] == ["a", "b"]
        beat = runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")
        assert beat.status_code == 409 and beat.json()["error"] == "stale_lease"
        assert sorted(finish(runner, alice, {})) == ["a", "b"]  # never the coordinator
        run = wait_until(alice, run_id, lambda r: r["status"] == "awaiting_review", "assembly")
        assert run["coordinator_status"] == "awaiting_assembly"


def test_cancelling_a_coordinator_cancels_its_active_children(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = coordinator(alice)
        set_plan(alice, run_id, DIAMOND)
        lease = claim_child(runner)
        assert lease is not None

        cancelled = alice.post(f"/api/runs/{run_id}/cancel", json={"reason": "enough"})
        assert cancelled.status_code == 200, cancelled.text

        children = alice.get("/api/runs", params={"parent_run_id": run_id}).json()["items"]
        assert len(children) == 2
        for child in children:
            ended = wait_until(alice, child["run_id"], lambda r: r["status"] == "cancelled", "cut")
            last = events_of(alice, ended["run_id"])[-1]
            assert last["type"] == "run.cancelled"
            assert last["data"]["reason"] == "coordinator cancelled"
        plan = alice.get(f"/api/runs/{run_id}/work-plan").json()
        statuses = {s["key"]: s["status"] for s in plan["subtasks"]}
        assert statuses == {"a": "cancelled", "b": "cancelled", "c": "blocked", "d": "blocked"}
        assert plan["status"] == "cancelled"
        stale = runner.post(
            f"/api/runs/{lease['run']['run_id']}/events",
            json={"fencing_token": lease["fencing_token"], "events": [{"type": "log", "data": {}}]},
        )
        assert stale.status_code == 409


def test_request_changes_redoes_the_named_subtask_and_its_dependents_with_the_comment(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = coordinator(alice)
        set_plan(alice, run_id, DIAMOND)
        finish(runner, alice, {})
        wait_until(alice, run_id, lambda r: r["status"] == "awaiting_review", "assembly")

        answer = alice.post(
            f"/api/runs/{run_id}/review",
            json={
                "approved": False,
                "request_changes": True,
                "comment": "c needs tests",
                "subtasks": ["c"],
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "in_progress"

        redone = []
        while (lease := claim_child(runner, wait=3)) is not None:
            assert lease["run"]["comment"] == "c needs tests"
            redone.append(key_of(alice, lease["run"]["run_id"]))
            report(runner, lease, "no_changes")
        assert redone == ["c", "d"]
        run = wait_until(alice, run_id, lambda r: r["status"] == "awaiting_review", "again")
        assert run["revision"] == 1
        plan = alice.get(f"/api/runs/{run_id}/work-plan").json()
        rounds = {s["key"]: (s["round"], s["attempts"]) for s in plan["subtasks"]}
        assert rounds == {"a": (1, 1), "b": (1, 1), "c": (2, 2), "d": (2, 2)}
        graph = alice.get(f"/api/runs/{run_id}/graph").json()
        assert graph["variant"] == "coordinator"
        assert {(e["from"], e["to"]) for e in graph["edges"]} == {
            ("a", "c"),
            ("b", "c"),
            ("c", "d"),
            ("d", "@assembly"),
        }


def test_steering_a_coordinator_without_a_target_reaches_every_active_child(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = coordinator(alice)
        set_plan(alice, run_id, DIAMOND)
        lease = claim_child(runner)
        assert lease is not None
        children = {
            c["subtask_key"]: c["child_run_id"] for c in wait_until_children(alice, run_id, 2)
        }

        answer = alice.post(
            f"/api/runs/{run_id}/steer", json={"kind": "redirect", "instruction": "use sqlite"}
        )

        assert answer.status_code == 202, answer.text
        assert sorted(answer.json()["targets"]) == sorted(children.values())
        position = answer.json()["position"]
        for child in children.values():
            read = alice.get(f"/api/runs/{child}", params={"min_position": position})
            directives = read.json()["directives"]
            assert [d["instruction"] for d in directives] == ["use sqlite"]
        beat = runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")
        assert [d["instruction"] for d in beat.json()["directives"]] == ["use sqlite"]

        stop = alice.post(f"/api/runs/{run_id}/steer", json={"kind": "stop", "instruction": "halt"})
        assert stop.status_code == 202, stop.text
        for child in children.values():
            wait_until(alice, child, lambda r: r["status"] == "cancelled", "stopped")
        again = alice.post(f"/api/runs/{run_id}/steer", json={"kind": "stop", "instruction": "x"})
        assert again.status_code == 409, again.text  # no active child left


def wait_until_children(alice: httpx.Client, run_id: str, count: int) -> list[dict[str, object]]:
    """The coordinator's children once `count` of them exist."""
    deadline = time.monotonic() + 20
    while True:
        items = alice.get(f"/api/runs/{run_id}/children").json()["items"]
        if len([i for i in items if i["child_status"]]) >= count:
            return items
        assert time.monotonic() < deadline, items
        time.sleep(0.05)


def test_a_run_submitted_with_its_plan_is_never_claimed_even_by_a_waiting_runner(
    server: Server, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        project = alice.post("/api/projects", json={"name": "p", "repository_path": str(repo)})
        project_id = project.json()["project_id"]
        waiting = ThreadPoolExecutor(1).submit(claim_child, runner, 10)

        answer = alice.post(
            f"/api/projects/{project_id}/runs",
            json={"task": "build", "work_plan": {"subtasks": DIAMOND[:1]}},
        )

        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        assert answer.json()["status"] == "in_progress"
        lease = waiting.result()
        assert lease is not None and lease["run"]["run_id"] != run_id  # the child, not it
        assert key_of(alice, lease["run"]["run_id"]) == "a"
        assert lease["run"]["originating_branch"] == f"runledger/{run_id}"
        assert git.branch_exists(repo, f"runledger/{run_id}")
        types = [e["type"] for e in events_of(alice, run_id)]
        assert types[:2] == ["run.submitted", "plan.set"]


def test_a_run_submitted_with_a_bad_plan_is_refused_and_nothing_is_stored(
    server: Server,
) -> None:
    with server.client(ALICE) as alice:
        cyclic = [{"key": "a", "title": "A", "depends_on": ["a"]}]
        answer = alice.post("/api/runs", json={"task": "x", "work_plan": {"subtasks": cyclic}})

        assert answer.status_code == 400, answer.text
        assert "a → a" in answer.json()["detail"]
        assert alice.get("/api/events").json()["events"] == []
