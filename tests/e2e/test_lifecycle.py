"""A run's whole life over real HTTP, and its stream replayed exactly 1..n then `done`."""

from __future__ import annotations

import httpx
from httpx_sse import connect_sse

from tests.support import ALICE, BOB, RUNNER, Server


def stream_frames(client: httpx.Client, path: str, **headers: str) -> list[tuple[str, str, str]]:
    """(id, event, data) of every frame until the server closes the stream (pings dropped)."""
    frames = []
    with connect_sse(client, "GET", path, headers=headers) as source:
        for sse in source.iter_sse():
            if sse.event == "message" and not sse.data:
                continue  # a `: ping` comment surfaced by httpx-sse
            frames.append((sse.id, sse.event, sse.data))
    return frames


def test_a_run_goes_from_submit_to_merged_and_its_stream_replays_exactly(server: Server) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        submitted = alice.post("/api/runs", json={"task": "fix the flaky test"})
        assert submitted.status_code == 202, submitted.text
        run_id = submitted.json()["run_id"]
        assert submitted.json()["status"] == "pending"

        claim = runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 5})
        assert claim.status_code == 200, claim.text
        lease = claim.json()
        assert lease["run"]["run_id"] == run_id
        token = lease["fencing_token"]

        for batch in range(4):
            events = [
                {"type": "agent.message.delta", "data": {"text": f"chunk {batch}-{i}"}}
                for i in range(50)
            ]
            answer = runner.post(
                f"/api/runs/{run_id}/events", json={"fencing_token": token, "events": events}
            )
            assert answer.status_code == 200, answer.text
        report = runner.post(
            f"/api/runs/{run_id}/report",
            json={
                "fencing_token": token,
                "outcome": "changes",
                "tree_hash": "abc123",
                "diff_stats": {"files": 1, "added": 3, "removed": 1},
            },
        )
        assert report.status_code == 200 and report.json()["status"] == "awaiting_review"
        review = alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
        assert review.status_code == 200, review.text
        assert review.json()["status"] == "merged"
        last = review.json()["sequence"]
        assert last == 1 + 1 + 200 + 1 + 2

        frames = stream_frames(alice, f"/api/runs/{run_id}/stream")
        ids = [int(f[0]) for f in frames if f[1] != "done"]
        assert ids == list(range(1, last + 1))
        assert frames[-1][1] == "done" and frames[-1][2] == "{}"
        assert [f[1] for f in frames[-3:-1]] == ["review.approved", "merge.completed"]

        run = alice.get(f"/api/runs/{run_id}", params={"min_position": review.json()["position"]})
        assert run.status_code == 200
        assert run.json()["status"] == "merged" and run.json()["merge_result"] is None
        assert run.json()["last_sequence"] == last
        assert int(run.headers["x-position"]) >= review.json()["position"]

        resumed = stream_frames(alice, f"/api/runs/{run_id}/stream", **{"Last-Event-ID": "200"})
        assert [int(f[0]) for f in resumed[:-1]] == list(range(201, last + 1))

        with server.client(BOB) as bob:
            assert bob.get(f"/api/runs/{run_id}").status_code == 404
            assert bob.get(f"/api/runs/{run_id}/stream").status_code == 404
