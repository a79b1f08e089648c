"""Steering over real HTTP, per API.md "Steering": `stop` cancels the target; `redirect` and
`amend` reach the runner (its claim, heartbeat answers) and are applied when it says so; their
status is on the run read model.

Each test gets its own server (the `server` fixture, on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import uuid
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
    submit,
)
from tests.support import ALICE, BOB, RUNNER, Server


def steer(client: httpx.Client, run: str, kind: str, instruction: str, **body: Any) -> Any:
    """POST /api/runs/{id}/steer, which must be accepted (202)."""
    answer = client.post(
        f"/api/runs/{run}/steer", json={"kind": kind, "instruction": instruction, **body}
    )
    return ok(answer, 202)


def directives(client: httpx.Client, run: str, position: int) -> list[tuple[str, str, str]]:
    """(kind, instruction, status) of the run's directives once the read model has `position`."""
    view = read_run(client, run, position)
    return [(d["kind"], d["instruction"], d["status"]) for d in view["directives"]]


def heartbeat(runner: httpx.Client, lease: dict[str, Any]) -> dict[str, Any]:
    return dict(ok(runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")))


def test_stop_cancels_the_run_with_the_instruction_as_its_reason(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice)["run_id"]
        lease = claim(runner, run)

        answer = steer(alice, run, "stop", "wrong repository")
        assert answer["kind"] == "stop" and answer["targets"] == [run], answer
        assert answer["status"] == "pending" and answer["run_id"] == run, answer
        uuid.UUID(answer["directive_id"])
        events = history(alice, run)
        assert [e["type"] for e in events[-2:]] == ["steering.directive", "run.cancelled"]
        assert events[-2]["data"] == {
            "directive_id": answer["directive_id"],
            "kind": "stop",
            "instruction": "wrong repository",
            "targets": [run],
        }
        assert events[-1]["data"] == {"reason": "stopped: wrong repository"}
        assert answer["sequence"] == events[-1]["sequence"]
        view = read_run(alice, run, answer["position"])
        assert view["status"] == "cancelled"
        assert [(d["kind"], d["status"]) for d in view["directives"]] == [("stop", "applied")]

        # The runner's lease went with it; steering the ended run is 409 and appends nothing.
        stale = runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")
        error(stale, 409, "stale_lease")
        before = last_sequence(alice, run)
        refused = alice.post(f"/api/runs/{run}/steer", json={"kind": "amend", "instruction": "x"})
        conflict(refused, "cancelled")
        assert last_sequence(alice, run) == before


def test_a_redirect_is_delivered_by_a_heartbeat_and_applied_by_the_runner(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice)["run_id"]
        lease = claim(runner, run)

        answer = steer(alice, run, "redirect", "fix the tests first")
        directive = answer["directive_id"]
        assert directives(alice, run, answer["position"]) == [
            ("redirect", "fix the tests first", "pending")
        ]

        told = [
            {"directive_id": directive, "kind": "redirect", "instruction": "fix the tests first"}
        ]
        first = heartbeat(runner, lease)
        assert (first["directives"], first["gates"]) == (told, [])
        assert directives(alice, run, first["position"])[0][2] == "delivered"
        second = heartbeat(runner, lease)
        assert second["directives"] == told  # listed until applied, delivered only once
        types = [e["type"] for e in history(alice, run)]
        assert types.count("steering.delivered") == 1
        assert types[-3:] == ["lease.renewed", "steering.delivered", "lease.renewed"]

        applied = append(
            runner,
            run,
            lease["fencing_token"],
            {"type": "steering.applied", "data": {"directive_id": directive}},
        )
        assert directives(alice, run, applied["position"])[0][2] == "applied"
        assert heartbeat(runner, lease)["directives"] == []
        assert read_run(alice, run, applied["position"])["status"] == "in_progress"


def test_a_claim_hands_the_runner_the_directives_sent_while_the_run_waited(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run = submit(alice)["run_id"]
        answer = steer(alice, run, "amend", "and add a changelog entry")

        lease = claim(runner, run)
        assert lease["run"]["directives"] == [
            {
                "directive_id": answer["directive_id"],
                "kind": "amend",
                "instruction": "and add a changelog entry",
            }
        ]
        assert [e["type"] for e in history(alice, run)][-2:] == [
            "run.claimed",
            "steering.delivered",
        ]
        assert heartbeat(runner, lease)["directives"] == lease["run"]["directives"]


def test_steering_a_child_run_records_the_directive_on_both_and_stops_only_the_child(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(BOB) as bob:
        parent = submit(alice, task="parent")["run_id"]
        child = submit(alice, task="child", parent_run_id=parent)["run_id"]
        stranger = submit(alice, task="not a child")["run_id"]
        bobs = submit(bob, task="bob's child?")["run_id"]

        answer = steer(alice, parent, "stop", "enough", target_child_run_id=child)
        assert answer["targets"] == [child] and answer["run_id"] == parent, answer
        assert history(alice, child)[-1]["data"] == {"reason": "stopped: enough"}
        assert history(alice, parent)[-1]["type"] == "steering.directive"
        view = read_run(alice, parent, answer["position"])
        assert view["status"] == "pending"
        assert [(d["status"], d["targets"]) for d in view["directives"]] == [("forwarded", [child])]

        # Not a child of this run, another user's run, or none at all: 404, nothing appended.
        before = [last_sequence(alice, r) for r in (parent, child, stranger)]
        for target in (stranger, bobs, str(uuid.uuid4()), parent):
            refused = alice.post(
                f"/api/runs/{parent}/steer",
                json={"kind": "amend", "instruction": "x", "target_child_run_id": target},
            )
            error(refused, 404, "not_found")
        # The child has ended: no target is active.
        refused = alice.post(
            f"/api/runs/{parent}/steer",
            json={"kind": "amend", "instruction": "x", "target_child_run_id": child},
        )
        conflict(refused, "cancelled")
        assert [last_sequence(alice, r) for r in (parent, child, stranger)] == before


def test_a_steer_with_an_idempotency_key_is_answered_again_and_recorded_once(
    server: Server,
) -> None:
    with server.client(ALICE) as alice:
        run = submit(alice)["run_id"]
        key = {"Idempotency-Key": "steer-1"}
        body = {"kind": "redirect", "instruction": "smaller steps"}
        first = alice.post(f"/api/runs/{run}/steer", json=body, headers=key)
        again = alice.post(f"/api/runs/{run}/steer", json=body, headers=key)
        assert (again.status_code, again.json()) == (202, ok(first, 202))
        assert [e["type"] for e in history(alice, run)].count("steering.directive") == 1
