"""A `run.claimed` stored by an older build (version 1) reads as the current version on
every path of a real server, on both stores: the run's history, its stream, the global log
and its stream, the read model, `?at_sequence=`, and the lease it holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from domain.runs import Run
from domain.timestamps import format_timestamp
from tests.e2e.helpers import Follower, global_history, read_frames, run_history, submit
from tests.support import ALICE, RUNNER, Server, open_runtime, postgres_schema

OWNER, RUNNER_NAME = "alice", "runner-1"  # the names of the keys ALICE and RUNNER


class OldClaim(NamedTuple):
    """A server whose store holds a run claimed by a version-1 `run.claimed` (sequence 2)."""

    server: Server
    url: str
    run_id: str
    lease_id: str
    data: dict[str, Any]  # the claim's data at the current version
    at: str


def store_version_1_claim(url: str, data_dir: Path, run_id: UUID) -> tuple[str, dict, str]:
    """Append what a build before `run.claimed` v2 stored (no `runner`, no `class_version`),
    through the event store's recorder, as that build would: its lease id, its data as read
    at the current version (with `runner`, and `confirm_by` null), and its time."""
    now = datetime.now(UTC)
    lease_id = str(uuid4())
    data = {
        "runner_id": RUNNER_NAME,
        "lease_id": lease_id,
        "fencing_token": 1,
        "lease_expires_at": format_timestamp(now + timedelta(hours=1)),
    }
    state = {"timestamp": format_timestamp(now), "actor": RUNNER_NAME, **data}
    runtime = open_runtime(url, data_dir)
    try:
        sequence = runtime.engine.get_run(run_id).version + 1
        stored = StoredEvent(run_id, sequence, Run.Claimed.TOPIC, orjson.dumps(state))
        runtime.engine.recorder.insert_events([stored])
    finally:
        runtime.close()
    return lease_id, {**data, "runner": RUNNER_NAME, "confirm_by": None}, state["timestamp"]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def old_claim(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OldClaim]:
    """One server per store, started on a log that already holds the version-1 claim."""
    with ExitStack() as stack:
        base = tmp_path_factory.mktemp(f"versions-{request.param}")
        if request.param == "sqlite":
            url = f"sqlite:///{base / 'events.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        writer = open_runtime(url, base / "data")
        try:
            run_id = writer.engine.submit_run(OWNER, "claimed by an old build").run_id
        finally:
            writer.close()
        lease_id, data, at = store_version_1_claim(url, base / "data", run_id)
        server = Server(url, base / "data").start()
        stack.callback(server.kill)
        yield OldClaim(server, url, str(run_id), lease_id, data, at)


def the_claim(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The one `run.claimed` among events."""
    (claimed,) = [e for e in events if e["type"] == "run.claimed"]
    return claimed


def test_the_run_history_shows_a_version_1_claim_at_the_current_version(
    old_claim: OldClaim,
) -> None:
    with old_claim.server.client(ALICE) as alice:
        claimed = run_history(alice, old_claim.run_id)[1]

    assert (claimed["type"], claimed["sequence"]) == ("run.claimed", 2)
    assert (claimed["data"], claimed["at"], claimed["actor"]) == (
        old_claim.data,
        old_claim.at,
        RUNNER_NAME,
    )


def test_the_run_history_as_ndjson_shows_a_version_1_claim_at_the_current_version(
    old_claim: OldClaim,
) -> None:
    with old_claim.server.client(ALICE) as alice:
        answer = alice.get(
            f"/api/runs/{old_claim.run_id}/events", headers={"Accept": "application/x-ndjson"}
        )

    lines = [orjson.loads(line) for line in answer.content.splitlines()]
    assert the_claim(lines)["data"] == old_claim.data


def test_the_run_stream_shows_a_version_1_claim_at_the_current_version(
    old_claim: OldClaim,
) -> None:
    with old_claim.server.client(ALICE) as alice:
        frames = read_frames(
            alice, f"/api/runs/{old_claim.run_id}/stream", until=lambda f: f.id == 2
        )

    assert (frames[-1].event, frames[-1].envelope["data"]) == ("run.claimed", old_claim.data)


def test_the_global_log_shows_a_version_1_claim_at_the_current_version(
    old_claim: OldClaim,
) -> None:
    with old_claim.server.client(ALICE) as alice:
        events = global_history(alice, params={"run_id": old_claim.run_id})

    assert the_claim(events)["data"] == old_claim.data


def test_the_global_stream_shows_a_version_1_claim_at_the_current_version(
    old_claim: OldClaim,
) -> None:
    with old_claim.server.client(ALICE) as alice:
        frames = read_frames(
            alice,
            "/api/events/stream",
            params={"run_id": old_claim.run_id},
            until=lambda f: f.event == "run.claimed",
        )

    assert frames[-1].envelope["data"] == old_claim.data


def test_the_read_model_shows_the_run_a_version_1_claim_started(old_claim: OldClaim) -> None:
    with old_claim.server.client(ALICE) as alice:
        run = alice.get(f"/api/runs/{old_claim.run_id}").json()

    assert (run["status"], run["started_at"]) == ("in_progress", old_claim.at)


def test_at_sequence_shows_the_run_a_version_1_claim_started(old_claim: OldClaim) -> None:
    with old_claim.server.client(ALICE) as alice:
        answer = alice.get(f"/api/runs/{old_claim.run_id}", params={"at_sequence": 2})

    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert (run["status"], run["started_at"], run["last_sequence"]) == (
        "in_progress",
        old_claim.at,
        2,
    )


def test_a_live_stream_shows_a_version_1_claim_another_process_stores_at_the_current_version(
    old_claim: OldClaim, tmp_path: Path
) -> None:
    server = old_claim.server
    with server.client(ALICE) as alice:
        run_id = submit(alice, "claimed by an old build while followed")["run_id"]
    follower = Follower(
        lambda: server.client(ALICE), f"/api/runs/{run_id}/stream", stop=lambda f: f.id == 2
    ).start()
    follower.wait_started()

    _, data, _ = store_version_1_claim(old_claim.url, tmp_path, UUID(run_id))

    frames = follower.result()
    assert (frames[-1].event, frames[-1].envelope["data"]) == ("run.claimed", data)


def test_a_heartbeat_renews_the_lease_of_a_version_1_claim(old_claim: OldClaim) -> None:
    with old_claim.server.client(RUNNER) as runner:
        answer = runner.post(f"/api/runner/leases/{old_claim.lease_id}/heartbeat")

    assert answer.status_code == 200, answer.text
    assert answer.json()["lease_id"] == old_claim.lease_id
