"""GET /api/events costs what the caller's own data costs, not everyone's history."""

from __future__ import annotations

import httpx

from tests.support import ALICE, BOB, RUNNER, Server

LOG = {"type": "log", "data": {"line": "x"}}


def flood(server: Server, requests: int) -> int:
    """Bob's run gets 500 times `requests` runner events; the last position."""
    with server.client(BOB) as bob, server.client(RUNNER) as runner:
        run_id = bob.post("/api/runs", json={"task": "noisy"}).json()["run_id"]
        claim = runner.post("/api/runner/claim", json={"runner_id": "r", "wait_seconds": 10})
        assert claim.status_code == 200, claim.text
        token = claim.json()["fencing_token"]
        for _ in range(requests):
            answer = runner.post(
                f"/api/runs/{run_id}/events",
                json={"fencing_token": token, "events": [LOG] * 500},
            )
            assert answer.status_code == 200, answer.text
        return int(answer.json()["position"])


def events(client: httpx.Client, **params: object) -> dict:
    answer = client.get("/api/events", params={"min_position": 0, **params})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_user_with_no_events_is_answered_past_everyone_elses_in_one_page(
    server: Server,
) -> None:
    head = flood(server, 45)  # more than one scan's worth (20,000 rows)
    with server.client(ALICE) as alice:
        page = events(alice, min_position=head)
    assert page == {"events": [], "last_position": head}


def test_a_users_first_event_after_a_long_history_is_found_on_the_first_page(
    server: Server,
) -> None:
    flood(server, 45)
    with server.client(ALICE) as alice:
        submitted = alice.post("/api/runs", json={"task": "mine"}).json()
        page = events(alice, min_position=submitted["position"])
    assert [e["run_id"] for e in page["events"]] == [submitted["run_id"]]


def test_a_deleted_runs_events_stay_in_its_owners_log(server: Server) -> None:
    with server.client(ALICE) as alice:
        run_id = alice.post("/api/runs", json={"task": "gone soon"}).json()["run_id"]
        assert alice.delete(f"/api/runs/{run_id}").status_code == 204
        page = events(alice)
    types = [e["type"] for e in page["events"]]
    assert types[0] == "run.submitted" and types[-1] == "run.deleted"
