"""SSE streams in bounded memory: a per-key limit on open streams, and a server whose memory
stays small under many replaying streams and comes back once they close.

Every test runs a real `runledger serve` on SQLite and on PostgreSQL. The memory tests read
the server's RSS from /proc while a separate client process (tests/streamclient.py) holds the
streams, so the client's memory is not counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import append, claim, submit, wait_for
from tests.streamclient import StreamHolder, rss_mb, settled_rss
from tests.support import ALICE, BOB, RUNNER, Server

LIMIT = 2
STREAMS, EVENTS = 100, 500
# Before streams were paged, 100 streams of 500 events held about 300 MB for good; paged,
# they take about 10 MB. The bounds leave room for a loaded machine, and fail the old code.
OPEN_BOUND_MB, CLOSED_BOUND_MB = 40, 25


def serve(store_url: str, data_dir: Path, **env: str) -> Server:
    """A server on which no lease expires mid-test (an expired run's stream would end)."""
    return Server(store_url, data_dir, RUNLEDGER_LEASE_SECONDS="3600", **env).start()


@pytest.fixture
def limited(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server that lets each key hold LIMIT streams."""
    srv = serve(store_url, tmp_path / "data", RUNLEDGER_MAX_STREAMS_PER_KEY=str(LIMIT))
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def roomy(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server with the default limit (100 streams per key)."""
    srv = serve(store_url, tmp_path / "data")
    try:
        yield srv
    finally:
        srv.kill()


@contextmanager
def held(client: httpx.Client, path: str) -> Iterator[httpx.Response]:
    """A stream request held open (whatever it answered) until the block ends."""
    with client.stream("GET", path, timeout=httpx.Timeout(30.0, read=10.0)) as response:
        yield response


def open_run(srv: Server, events: int = 0) -> str:
    """A run of Alice's, claimed and still open (its stream does not end), with `events`
    events in all when asked for more than the first two (submitted, claimed)."""
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run_id = str(submit(alice, "streams")["run_id"])
        token = int(claim(runner)["fencing_token"])
        left = events - 2
        while left > 0:
            batch = [{"type": "tool.output", "data": {"text": "x" * 400}}] * min(left, 250)
            append(runner, run_id, token, batch)
            left -= len(batch)
    return run_id


def status_of(client: httpx.Client, path: str) -> int:
    """The status a stream request answers (the stream, if any, is dropped at once)."""
    with held(client, path) as response:
        return response.status_code


def fill(stack: ExitStack, client: httpx.Client, path: str, count: int = LIMIT) -> None:
    """Open `count` streams of the path, each answering 200, kept open by the stack."""
    for _ in range(count):
        assert stack.enter_context(held(client, path)).status_code == 200


def test_a_key_over_its_stream_limit_gets_429_with_retry_after(limited: Server) -> None:
    run_id = open_run(limited)
    with ExitStack() as stack, limited.client(ALICE) as alice:
        first = stack.enter_context(held(alice, f"/api/runs/{run_id}/stream"))
        second = stack.enter_context(held(alice, "/api/events/stream"))
        assert (first.status_code, second.status_code) == (200, 200)
        for path in (f"/api/runs/{run_id}/stream", "/api/events/stream"):
            with held(alice, path) as refused:
                assert refused.status_code == 429
                body = json.loads(refused.read())
                assert body["error"] == "too_many_streams" and body["detail"]
                assert int(refused.headers["retry-after"]) >= 1


def test_a_closed_stream_frees_its_slot_for_the_next(limited: Server) -> None:
    run_id = open_run(limited)
    path = f"/api/runs/{run_id}/stream"
    with ExitStack() as stack, limited.client(ALICE) as alice:
        fill(stack, alice, path, LIMIT - 1)
        with held(alice, path) as last:
            assert last.status_code == 200
            assert status_of(alice, path) == 429
        wait_for(lambda: status_of(alice, path) == 200, 10, "a slot after a stream closed")


def test_another_keys_streams_do_not_count_against_a_full_key(limited: Server) -> None:
    run_id = open_run(limited)
    with ExitStack() as stack, limited.client(ALICE) as alice, limited.client(BOB) as bob:
        fill(stack, alice, f"/api/runs/{run_id}/stream")
        assert status_of(alice, "/api/events/stream") == 429
        assert stack.enter_context(held(bob, "/api/events/stream")).status_code == 200


# -- memory ----------------------------------------------------------------------------------


def replay_many(srv: Server) -> tuple[float, float, float]:
    """Idle RSS, RSS with STREAMS streams open after replaying EVENTS each, RSS after close."""
    run_id = open_run(srv, EVENTS)
    assert srv.proc is not None
    pid = srv.proc.pid
    idle = settled_rss(pid)
    holder = StreamHolder(srv.port, f"/api/runs/{run_id}/stream", [ALICE], STREAMS, EVENTS)
    try:
        result = holder.wait_replayed(timeout=120)
        assert (result.replayed, result.statuses) == (STREAMS, {})
        opened = rss_mb(pid)
        holder.close()
    finally:
        holder.kill()
    return idle, opened, settled_rss(pid)


def test_a_hundred_streams_replaying_history_take_little_server_memory(roomy: Server) -> None:
    idle, opened, _ = replay_many(roomy)
    assert opened - idle < OPEN_BOUND_MB, f"idle {idle:.1f} MB, open {opened:.1f} MB"


def test_the_memory_of_closed_streams_goes_back(roomy: Server) -> None:
    idle, opened, closed = replay_many(roomy)
    assert closed - idle < CLOSED_BOUND_MB, (
        f"idle {idle:.1f}, open {opened:.1f}, closed {closed:.1f}"
    )
