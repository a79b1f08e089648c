"""No run lost to a vanished runner, over real HTTP and real sockets: a long-poll claim
whose client disconnected never takes a run; a claim never confirmed (no event, heartbeat
or report) goes back within the confirm window without using an attempt; a confirmed
claim stays. And GET /api/runners, who holds which lease."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.runs_helpers import types_of, wait_until
from tests.support import ALICE, BOB, RUNNER, Server

CONFIRM = 1.0  # s: the server's confirm window here


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server whose claims must be confirmed within a second."""
    srv = Server(store_url, tmp_path / "data", RUNLEDGER_CLAIM_CONFIRM_SECONDS=str(CONFIRM)).start()
    try:
        yield srv
    finally:
        srv.kill()


def raw_claim(server: Server, wait_seconds: float) -> socket.socket:
    """A claim sent on a bare socket, its answer left unread: the caller closes it."""
    host, port = server.url.removeprefix("http://").split(":")
    body = orjson.dumps({"runner_id": "vanishing", "wait_seconds": wait_seconds})
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        b"POST /api/runner/claim HTTP/1.1\r\nHost: runledger\r\n"
        + f"Authorization: Bearer {RUNNER}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def claim(runner: httpx.Client, runner_id: str = "steady", wait: float = 5) -> dict:
    answer = runner.post("/api/runner/claim", json={"runner_id": runner_id, "wait_seconds": wait})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_long_poll_whose_client_disconnected_never_claims_a_run(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        gone = raw_claim(server, 20)
        time.sleep(0.5)  # the claim is waiting
        gone.close()
        time.sleep(0.5)  # the server has seen the socket close
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        time.sleep(1.0)  # long enough for a waiting claim to have taken it

        assert types_of(alice, run_id) == ["run.submitted"]
        taken = claim(runner)
        assert taken["run"]["run_id"] == run_id
        assert (taken["fencing_token"], taken["run"]["attempt"]) == (1, 1)


def test_a_claim_whose_client_closed_the_socket_gives_the_run_back_without_an_attempt(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        raw_claim(server, 0).close()  # the answer, if any, is never read

        # Whether the server saw the close before claiming (no claim), as it answered
        # (given back at once) or not at all (given back when the window ends), the run is
        # claimable again within the window, its attempt unused.
        taken = wait_until(lambda: claim(runner, wait=CONFIRM + 3), timeout=CONFIRM + 10)
        assert taken["run"]["run_id"] == run_id and taken["run"]["attempt"] == 1
        types = types_of(alice, run_id)
        assert types in (
            ["run.submitted", "run.claimed"],
            ["run.submitted", "run.claimed", "run.claim_abandoned", "run.claimed"],
        ), types


def test_a_claim_never_confirmed_goes_back_to_pending_within_the_window(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        lost = claim(runner, "lost")  # as if its answer never reached the runner
        claimed_at = time.monotonic()

        events = wait_until(
            lambda: (
                (e := alice.get(f"/api/runs/{run_id}/events").json()["events"])[-1]["type"]
                == "run.claim_abandoned"
                and e
            ),
            timeout=CONFIRM + 10,
        )
        assert time.monotonic() - claimed_at < CONFIRM + 5
        abandoned = events[-1]["data"]
        assert abandoned["lease_id"] == lost["lease_id"]
        assert (abandoned["fencing_token"], abandoned["runner_id"]) == (1, "lost")
        assert abandoned["reason"] == "not_confirmed"
        run = alice.get(f"/api/runs/{run_id}", params={"min_position": events[-1]["position"]})
        assert run.json()["status"] == "pending" and run.json()["attempt"] == 1

        # The lost claim's runner is refused from now on; the next claim takes the run.
        stale = runner.post(
            f"/api/runs/{run_id}/events",
            json={"fencing_token": lost["fencing_token"], "events": [{"type": "log", "data": {}}]},
        )
        assert stale.status_code == 409 and stale.json()["error"] == "stale_lease"
        again = claim(runner)
        assert again["run"]["run_id"] == run_id
        assert (again["fencing_token"], again["run"]["attempt"]) == (2, 1)


@pytest.mark.parametrize("confirm_with", ["heartbeat", "event"])
def test_a_confirmed_claim_is_kept_past_the_window(server: Server, confirm_with: str) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        taken = claim(runner)
        if confirm_with == "heartbeat":
            beat = runner.post(f"/api/runner/leases/{taken['lease_id']}/heartbeat")
            assert beat.status_code == 200, beat.text
        else:
            sent = runner.post(
                f"/api/runs/{run_id}/events",
                json={
                    "fencing_token": taken["fencing_token"],
                    "events": [{"type": "log", "data": {"message": "started"}}],
                },
            )
            assert sent.status_code == 200, sent.text
        time.sleep(CONFIRM + 1.5)

        assert "run.claim_abandoned" not in types_of(alice, run_id)
        assert alice.get(f"/api/runs/{run_id}").json()["status"] == "in_progress"


def test_runners_lists_who_holds_the_leases_of_the_callers_runs(server: Server) -> None:
    with (
        server.client(ALICE) as alice,
        server.client(BOB) as bob,
        server.client(RUNNER) as runner,
    ):
        run_id = alice.post("/api/runs", json={"task": "t"}).json()["run_id"]
        taken = claim(runner, "worker-7")
        beat = runner.post(f"/api/runner/leases/{taken['lease_id']}/heartbeat").json()

        listed = alice.get("/api/runners", params={"min_position": beat["position"]})
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["items"]
        assert item["run_id"] == run_id and item["lease_id"] == taken["lease_id"]
        assert (item["runner"], item["runner_id"]) == ("runner-1", "worker-7")
        assert item["claimed_at"].endswith("Z") and item["last_heartbeat_at"].endswith("Z")
        assert item["claimed_at"] <= item["last_heartbeat_at"]
        assert item["lease_expires_at"] == beat["lease_expires_at"]
        assert set(item) == {
            "runner",
            "runner_id",
            "run_id",
            "lease_id",
            "claimed_at",
            "last_heartbeat_at",
            "lease_expires_at",
        }

        assert bob.get("/api/runners").json()["items"] == []  # not Bob's run
        assert runner.get("/api/runners").status_code == 403  # user keys only
        assert alice.get("/api/runners", params={"limit": "0"}).status_code == 400

        done = runner.post(
            f"/api/runs/{run_id}/report",
            json={"fencing_token": taken["fencing_token"], "outcome": "no_changes"},
        ).json()
        after = alice.get("/api/runners", params={"min_position": done["position"]})
        assert after.json()["items"] == []  # the lease ended with the run
