"""Streams under concurrency: writers append while readers drop and reconnect at random points.

Contract (API.md, "Events and streams"): a resumed stream "sends every stored event with
sequence > N in order, then follows live events, with no gap and no duplicate, however the
reconnect races new appends"; the header `Last-Event-ID` wins over `?after=`; the global
stream's ids are positions; a user's global reads only ever contain that user's own data.

Every reader is seeded (set RUNLEDGER_TEST_SEED to replay a failure) and every loop and wait
is bounded.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.helpers import (
    Follower,
    Frame,
    append,
    claim,
    deltas,
    global_history,
    open_stream,
    report,
    run_history,
    submit,
)
from tests.support import ALICE, BOB, RUNNER, Server

SEED = int(os.environ.get("RUNLEDGER_TEST_SEED", "20261123"))
READERS = 5
DEADLINE = 40.0  # seconds for any one scenario's readers, however unlucky


@dataclass
class Reader:
    """One reader's story: the ids it kept, and how it connected each time."""

    name: str
    ids: list[int] = field(default_factory=list)
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    ended_with_done: bool = False

    def describe(self) -> str:
        return f"{self.name} (seed {SEED}) connects={self.connects}"


def resume_args(rng: random.Random, last: int | None) -> tuple[str, int | None, dict[str, Any]]:
    """How to reconnect: the Last-Event-ID header, ?after=, or both (the header must win)."""
    if last is None:
        return "fresh", None, {}
    mode = rng.choice(["header", "header", "query", "both"])
    if mode == "header":
        return f"header:{last}", last, {}
    if mode == "query":
        return f"after:{last}", None, {"after": last}
    stale = rng.randint(0, last)  # a lower ?after= that the header overrides
    return f"header:{last}+after:{stale}", last, {"after": stale}


def follow_with_reconnects(
    server: Server,
    key: str,
    path: str,
    rng: random.Random,
    reader: Reader,
    finished: Callable[[Frame], bool],
    *,
    start_delay: float,
    max_per_connection: int = 30,
) -> Reader:
    """Follow a stream, dropping the connection after a random number of events each time,
    until `done` or `finished(frame)`; fail past the deadline."""
    deadline = time.monotonic() + DEADLINE
    time.sleep(start_delay)
    with server.client(key) as client:
        for _ in range(10_000):
            assert time.monotonic() < deadline, f"{reader.describe()}: out of time"
            last = reader.ids[-1] if reader.ids else None
            how, header, params = resume_args(rng, last)
            reader.connects.append(how)
            drop_after = rng.randint(1, max_per_connection)
            taken = 0
            try:
                with open_stream(
                    client, path, last_event_id=header, params=params, read_timeout=2.0
                ) as frames:
                    for frame in frames:
                        if frame.event == "done":
                            reader.ended_with_done = True
                            return reader
                        assert frame.id is not None
                        reader.ids.append(frame.id)
                        reader.envelopes.append(frame.envelope)
                        if finished(frame):
                            return reader
                        taken += 1
                        if taken >= drop_after:
                            break  # drop the connection mid-stream
            except httpx.ReadTimeout:
                reader.connects.append("timeout")  # quiet for 2 s: reconnect and carry on
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0, 0.02))  # sometimes let appends pile up meanwhile
    raise AssertionError(f"{reader.describe()}: too many reconnects")


def run_writer(
    server: Server, run_id: str, token: int, batches: int, size: int, rng: random.Random
) -> dict[str, Any]:
    """Append `batches` batches of runner events with small random pauses, then finish the run
    with `no_changes`; the report's answer."""
    with server.client(RUNNER) as runner:
        for i in range(batches):
            append(runner, run_id, token, deltas(f"{run_id[:8]}-{i}", size))
            time.sleep(rng.uniform(0, 0.01))
        return report(runner, run_id, token, "no_changes")


def results(futures: list[Future[Any]], timeout: float = DEADLINE + 10) -> list[Any]:
    """Every future's result (raising the first failure), bounded in time."""
    end = time.monotonic() + timeout
    return [f.result(timeout=max(0.1, end - time.monotonic())) for f in futures]


def test_run_stream_readers_reconnecting_at_random_see_every_event_exactly_once(
    server: Server,
) -> None:
    rng = random.Random(SEED)
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = submit(alice, "many appends, many reconnects")["run_id"]
        token = claim(runner)["fencing_token"]
    path = f"/api/runs/{run_id}/stream"
    with ThreadPoolExecutor(READERS + 1) as pool:
        readers = [
            pool.submit(
                follow_with_reconnects,
                server,
                ALICE,
                path,
                random.Random(SEED + i),
                Reader(f"reader{i}"),
                lambda _f: False,
                start_delay=rng.uniform(0, 0.5),
            )
            for i in range(READERS)
        ]
        writer = pool.submit(run_writer, server, run_id, token, 60, 5, random.Random(SEED - 1))
        final = results([writer])[0]
        done = results(readers)

    n = final["sequence"]
    assert final["status"] == "completed" and n == 1 + 1 + 60 * 5 + 1
    with server.client(ALICE) as alice:
        history = run_history(alice, run_id)
    assert [e["sequence"] for e in history] == list(range(1, n + 1))
    for reader in done:
        assert reader.ids == list(range(1, n + 1)), reader.describe()
        assert reader.envelopes == history, reader.describe()
        assert reader.ended_with_done, reader.describe()
        assert len(reader.connects) > 3, reader.describe()


def two_runs(server: Server) -> tuple[str, str, Callable[[ThreadPoolExecutor, int, int], list]]:
    """Alice's and Bob's runs, each claimed; their ids, and a function that starts a writer
    on each (`batches` of 5 events for Alice's, of 3 for Bob's) and returns their futures."""
    with (
        server.client(ALICE) as alice,
        server.client(BOB) as bob,
        server.client(RUNNER) as runner,
    ):
        alice_run = submit(alice, "alice's run")["run_id"]
        bob_run = submit(bob, "bob's run")["run_id"]
        leases = {}
        for _ in range(2):
            lease = claim(runner)
            leases[lease["run"]["run_id"]] = lease["fencing_token"]
    assert set(leases) == {alice_run, bob_run}

    def start(pool: ThreadPoolExecutor, alice_batches: int, bob_batches: int) -> list:
        return [
            pool.submit(
                run_writer, server, run, leases[run], batches, size, random.Random(SEED + size)
            )
            for run, batches, size in ((alice_run, alice_batches, 5), (bob_run, bob_batches, 3))
        ]

    return alice_run, bob_run, start


def completes(run_id: str) -> Callable[[Frame], bool]:
    """True on the frame that ends the given run (its last event)."""
    return lambda f: f.event == "run.completed" and f.envelope["run_id"] == run_id


def test_global_stream_readers_reconnecting_at_random_see_exactly_the_users_positions(
    server: Server,
) -> None:
    rng = random.Random(SEED + 100)
    alice_run, _bob_run, start_writers = two_runs(server)
    with ThreadPoolExecutor(READERS + 2) as pool:
        readers = [
            pool.submit(
                follow_with_reconnects,
                server,
                ALICE,
                "/api/events/stream",
                random.Random(SEED + 100 + i),
                Reader(f"global{i}"),
                completes(alice_run),
                start_delay=rng.uniform(0, 0.5),
            )
            for i in range(READERS)
        ]
        results(start_writers(pool, 60, 40))
        done = results(readers)

    with server.client(ALICE) as alice:
        expected = global_history(alice)
    positions = [e["position"] for e in expected]
    assert positions == sorted(set(positions))
    assert {e["run_id"] for e in expected} == {alice_run}
    assert len(expected) == 1 + 1 + 60 * 5 + 1
    for reader in done:
        assert reader.ids == sorted(set(reader.ids)), f"not increasing: {reader.describe()}"
        assert reader.ids == positions, reader.describe()
        assert reader.envelopes == expected, reader.describe()
        assert len(reader.connects) > 3, reader.describe()


def test_bobs_global_stream_never_carries_alices_events(server: Server) -> None:
    alice_run, bob_run, start_writers = two_runs(server)
    with ThreadPoolExecutor(4) as pool:
        # One of Bob's streams stays connected throughout; others drop and reconnect.
        steady = Follower(
            lambda: server.client(BOB),
            "/api/events/stream",
            stop=completes(bob_run),
            timeout=DEADLINE,
        ).start()
        jumpy = [
            pool.submit(
                follow_with_reconnects,
                server,
                BOB,
                "/api/events/stream",
                random.Random(SEED + 200 + i),
                Reader(f"bob{i}"),
                completes(bob_run),
                start_delay=0.1 * i,
            )
            for i in range(2)
        ]
        steady.wait_started()  # connected (bob's run.submitted) before the writers start
        writers = start_writers(pool, 40, 40)
        # Bob asking for Alice's run by filter learns nothing either (404, or nothing at all).
        filtered: list[Frame] = []
        with server.client(BOB) as bob:
            filtered_status = 0
            try:
                with bob.stream(
                    "GET",
                    "/api/events/stream",
                    params={"run_id": alice_run},
                    timeout=httpx.Timeout(10.0, read=1.5),
                ) as response:
                    filtered_status = response.status_code
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            filtered.append(Frame(None, "data", line))
                            break
            except httpx.ReadTimeout:
                pass  # nothing to say for 1.5 s: right
            assert filtered_status in (0, 200, 404)
            assert bob.get(f"/api/runs/{alice_run}/stream").status_code == 404
            listed = bob.get("/api/events", params={"run_id": alice_run})
            assert listed.status_code == 404 or listed.json()["events"] == [], listed.text
        results(writers)
        bob_readers = results(jumpy)
        steady_frames = steady.result(DEADLINE)

    assert filtered == [], filtered
    with server.client(ALICE) as alice, server.client(BOB) as bob:
        alice_positions = {e["position"] for e in global_history(alice)}
        bob_events = global_history(bob)
    assert {e["run_id"] for e in bob_events} == {bob_run}
    assert len(bob_events) == 1 + 1 + 40 * 3 + 1
    assert not alice_positions & {e["position"] for e in bob_events}
    assert [f.envelope for f in steady_frames] == bob_events
    assert [f.id for f in steady_frames] == [e["position"] for e in bob_events]
    for reader in bob_readers:
        assert not alice_positions & set(reader.ids), reader.describe()
        assert {e["run_id"] for e in reader.envelopes} == {bob_run}, reader.describe()
        assert reader.envelopes == bob_events, reader.describe()
