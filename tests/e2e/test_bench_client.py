"""The benchmarks' load client (scripts/benchserver.py, `LeanClient`), against a real server:
its answers are the server's, byte for byte, over one kept-alive connection, and it says so
when it cannot read an answer rather than counting it."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import ALICE, RUNNER, Server

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from benchload import BenchError  # noqa: E402
from benchserver import LeanClient  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server (the client does not care which store is behind it)."""
    base = tmp_path_factory.mktemp("bench-client")
    srv = Server(f"sqlite:///{base / 'events.db'}", base / "data").start()
    try:
        yield srv
    finally:
        srv.kill()


def test_answers_are_the_servers_over_one_connection(served: Server) -> None:
    client = LeanClient(served, ALICE)  # type: ignore[arg-type]  # (a test server: its port)
    try:
        status, body = client.post("/api/runs", orjson.dumps({"task": "measured"}))
        assert status == 202, body
        run_id = orjson.loads(body)["run_id"]
        connection = client._sock
        for _ in range(200):  # until the read model has it (no X-Min-Position here)
            status, body = client.get(f"/api/runs/{run_id}")
            if status != 404:
                break
            time.sleep(0.01)
        assert status == 200, body
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {ALICE}"}) as c:
            assert orjson.loads(body) == c.get(f"/api/runs/{run_id}").json()
        status, body = client.post("/api/runs", b"{not json")
        assert status == 400 and orjson.loads(body)["error"] == "invalid_request"
        status, _ = client.get("/api/runs/not-a-uuid")
        assert status in (400, 404)
        assert client._sock is connection  # kept alive throughout, errors included
    finally:
        client.close()


def test_an_answer_without_a_body(served: Server) -> None:
    runner = LeanClient(served, RUNNER)  # type: ignore[arg-type]
    try:
        # Nothing to claim: 204, and the next request on the same connection still works.
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {ALICE}"}) as c:
            for run in c.get("/api/runs").json()["items"]:
                c.post(f"/api/runs/{run['run_id']}/cancel", json={"reason": "not this test's"})
        claim = orjson.dumps({"runner_id": "bench", "wait_seconds": 0})
        assert runner.post("/api/runner/claim", claim) == (204, b"")
        status, body = runner.get("/health")
        assert status == 200 and orjson.loads(body)["status"] == "ok"
    finally:
        runner.close()


def test_a_streamed_answer_is_refused_not_misread(served: Server) -> None:
    client = LeanClient(served, ALICE)  # type: ignore[arg-type]
    try:
        _, body = client.post("/api/runs", orjson.dumps({"task": "streamed"}))
        run_id = orjson.loads(body)["run_id"]
        with pytest.raises(BenchError, match="cannot read"):
            client.get(f"/api/runs/{run_id}/stream")
        assert client._sock is None  # the half-read connection was dropped
        assert client.get("/health")[0] == 200  # and a new one opened
    finally:
        client.close()


def test_a_connection_closed_mid_answer_is_an_error() -> None:
    # A peer that sends half an answer and hangs up (no server does this on purpose).
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def half_answer() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial":')
        conn.close()

    peer = threading.Thread(target=half_answer)
    peer.start()
    client = LeanClient(type("Peer", (), {"port": port})(), ALICE)  # type: ignore[arg-type]
    try:
        with pytest.raises(ConnectionError):
            client.get("/")
    finally:
        client.close()
        peer.join()
        listener.close()
