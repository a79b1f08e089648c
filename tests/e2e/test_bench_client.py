"""The benchmarks' load client (scripts/benchserver.py, `LeanClient`), against a real server:
its answers are the server's, byte for byte, over one kept-alive connection, and it says so
when it cannot read an answer rather than counting it; against peers that answer in ways
the server does not (yet): a head in pieces, an interim 100, `Connection: close`."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
            assert body == c.get(f"/api/runs/{run_id}").content
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
        connection = runner._sock
        status, body = runner.get("/health")
        assert status == 200 and orjson.loads(body)["status"] == "ok"
        assert runner._sock is connection
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


class Peer:
    """A one-connection HTTP peer on a free port that answers each request it reads with
    the next of `answers`, sent in pieces of `piece` bytes."""

    def __init__(self, answers: list[bytes], piece: int = 65536) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, args=(answers, piece))
        self.thread.start()

    def _serve(self, answers: list[bytes], piece: int) -> None:
        conn, _ = self.listener.accept()
        with conn:
            for answer in answers:
                self.requests.append(conn.recv(65536))
                for i in range(0, len(answer), piece):
                    conn.sendall(answer[i : i + piece])
                    time.sleep(0.001)

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.listener.close()


@contextmanager
def talking_to(answers: list[bytes], piece: int = 65536) -> Iterator[tuple[Peer, LeanClient]]:
    """A Peer giving `answers`, and a LeanClient of it; both closed afterwards."""
    peer = Peer(answers, piece)
    client = LeanClient(peer, ALICE)  # type: ignore[arg-type]  # (a peer: its port)
    try:
        yield peer, client
    finally:
        client.close()
        peer.close()


def test_an_answer_in_pieces_after_an_interim_one() -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 8\r\n"
        b'X-Other: a:b\r\n\r\n{"a": 1}',
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ]
    with talking_to(answers, piece=3) as (peer, client):
        assert client.post("/x", b"{}") == (201, b'{"a": 1}')
        assert client.get("/y") == (200, b"ok")
        assert peer.requests[0].startswith(b"POST /x HTTP/1.1\r\n")
        assert peer.requests[0].endswith(b"Content-Length: 2\r\n\r\n{}")
        assert f"Authorization: Bearer {ALICE}".encode() in peer.requests[1]


def test_connection_close_is_honoured() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    with talking_to([answer]) as (_, client):
        assert client.get("/") == (200, b"ok")
        assert client._sock is None  # the next request opens a new connection


def test_a_connection_closed_mid_answer_is_an_error() -> None:
    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial":'
    with talking_to([answer]) as (_, client):
        with pytest.raises(ConnectionError):
            client.get("/")
        assert client._sock is None
