"""A database outage, for real: the server's PostgreSQL goes away for a few seconds (a proxy
closes every connection and refuses new ones) while clients keep calling.

One outage per module (`outage`), observed from every side; each test asserts one thing
about what was seen. Then a busy SQLite file, which is SQLite's kind of unavailability.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from adapters.store import StoreSettings
from tests.faults import TcpProxy
from tests.support import ALICE, PG_URL, RUNNER, Server, postgres_schema

OUTAGE_SECONDS = 7.0
ANSWER_WITHIN = 5.0


@dataclass
class Answer:
    """One request's outcome."""

    name: str
    status: int
    seconds: float
    body: str = ""
    retry_after: str | None = None
    error: str = ""  # a transport failure instead of an answer


@dataclass
class Observed:
    """Everything the outage scenario saw."""

    health_before: dict[str, object] = field(default_factory=dict)
    health_during: dict[str, object] = field(default_factory=dict)
    health_after: dict[str, object] = field(default_factory=dict)
    health_turned_after: float | None = None
    during: list[Answer] = field(default_factory=list)
    writes: list[Answer] = field(default_factory=list)
    resumed_after: float | None = None
    acknowledged: list[str] = field(default_factory=list)
    stored: Counter[str] = field(default_factory=Counter)
    stream_outcome: str = ""
    server_output: str = ""


def call(name: str, send: Callable[[], httpx.Response]) -> Answer:
    """Time one request; a transport failure becomes an Answer with status 0."""
    started = time.monotonic()
    try:
        response = send()
    except httpx.HTTPError as exc:
        return Answer(name, 0, time.monotonic() - started, error=repr(exc))
    return Answer(
        name,
        response.status_code,
        time.monotonic() - started,
        response.text[:300],
        response.headers.get("retry-after"),
    )


class Writer(threading.Thread):
    """Appends one runner event per request, each with its own marker, until stopped."""

    def __init__(self, runner: httpx.Client, run_id: str, token: int) -> None:
        super().__init__(daemon=True)
        self.runner, self.run_id, self.token = runner, run_id, token
        self.answers: list[Answer] = []
        self.acknowledged: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            marker = f"w-{n}"
            body = {
                "fencing_token": self.token,
                "events": [{"type": "log", "data": {"line": marker}}],
            }
            path = f"/api/runs/{self.run_id}/events"
            answer = call("runner events", lambda p=path, b=body: self.runner.post(p, json=b))
            self.answers.append(answer)
            if answer.status == 200:
                self.acknowledged.append(marker)
            time.sleep(0.05)


def endpoint_calls(
    alice: httpx.Client, runner: httpx.Client, run_id: str, lease: dict[str, object]
) -> dict[str, Callable[[], httpx.Response]]:
    """One request to each read and write endpoint a client uses."""
    token = lease["fencing_token"]
    beat = f"/api/runner/leases/{lease['lease_id']}/heartbeat"
    report = {"fencing_token": token, "outcome": "no_changes"}
    line = {"fencing_token": token, "events": [{"type": "log", "data": {"line": "probe"}}]}
    return {
        "runs list": lambda: alice.get("/api/runs"),
        "run get": lambda: alice.get(f"/api/runs/{run_id}"),
        "run get (min_position)": lambda: alice.get(
            f"/api/runs/{run_id}", headers={"X-Min-Position": str(10**9)}
        ),
        "run events": lambda: alice.get(f"/api/runs/{run_id}/events"),
        "global events": lambda: alice.get("/api/events"),
        "run stream": lambda: alice.get(f"/api/runs/{run_id}/stream", timeout=8),
        "diagnostics": lambda: alice.get("/api/diagnostics"),
        "submit": lambda: alice.post("/api/runs", json={"task": "during the outage"}),
        "claim": lambda: runner.post("/api/runner/claim", json={"runner_id": "r9"}),
        "claim (long poll)": lambda: runner.post(
            "/api/runner/claim", json={"runner_id": "r9", "wait_seconds": 3}
        ),
        "heartbeat": lambda: runner.post(beat),
        "runner events": lambda: runner.post(f"/api/runs/{run_id}/events", json=line),
        "report": lambda: runner.post(f"/api/runs/{run_id}/report", json=report),
    }


def read_stream(client: httpx.Client, path: str, stop: threading.Event) -> str:
    """Follow an SSE stream until it ends or `stop`: how it ended ("clean", "open", or the
    transport error)."""
    try:
        with client.stream("GET", path, timeout=httpx.Timeout(30, read=2)) as response:
            if response.status_code != 200:
                return f"status {response.status_code}"
            lines = response.iter_lines()
            while not stop.is_set():
                try:
                    next(lines)
                except StopIteration:
                    return "clean"
                except httpx.ReadTimeout:
                    continue  # quiet between pings: still open
            return "open"
    except httpx.HTTPError as exc:
        return repr(exc)


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Seconds until `predicate()` held, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    return None


def health(client: httpx.Client) -> tuple[int, dict[str, object]]:
    """GET /health: its status and body (status 0 on a transport error)."""
    try:
        response = client.get("/health", timeout=5)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


def run_outage(server: Server, proxy: TcpProxy) -> Observed:
    """Set up runs, take the database away for OUTAGE_SECONDS, give it back, observe."""
    seen = Observed()
    with (
        server.client(ALICE) as alice,
        server.client(RUNNER) as runner,
        server.client(RUNNER) as writer_client,
        httpx.Client(base_url=server.url) as anonymous,
    ):
        streamed = alice.post("/api/runs", json={"task": "written to during the outage"}).json()
        first = runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 5}).json()
        reported = alice.post("/api/runs", json={"task": "reported during the outage"}).json()
        second = runner.post(
            "/api/runner/claim", json={"runner_id": "r2", "wait_seconds": 5}
        ).json()
        alice.post("/api/runs", json={"task": "claimable during the outage"})
        assert first["run"]["run_id"] == streamed["run_id"]
        assert second["run"]["run_id"] == reported["run_id"]
        seen.health_before = health(anonymous)[1]

        stop_stream = threading.Event()
        with ThreadPoolExecutor(max_workers=16) as pool:
            stream = pool.submit(
                read_stream, alice, f"/api/runs/{streamed['run_id']}/stream", stop_stream
            )
            writer = Writer(writer_client, streamed["run_id"], first["fencing_token"])
            writer.start()
            time.sleep(0.5)

            proxy.cut()
            restore_at = time.monotonic() + OUTAGE_SECONDS
            seen.health_turned_after = wait_for(lambda: health(anonymous)[0] == 503, 5)
            seen.health_during = health(anonymous)[1]
            calls = endpoint_calls(alice, runner, reported["run_id"], second)
            for _ in range(2):  # with connections just dropped, then with connects refused
                futures = [pool.submit(call, name, send) for name, send in calls.items()]
                seen.during += [f.result() for f in futures]
                time.sleep(2.0)
            time.sleep(max(0.0, restore_at - time.monotonic()))

            writes_before = len(writer.answers)
            proxy.restore()
            seen.resumed_after = wait_for(
                lambda: any(a.status == 200 for a in writer.answers[writes_before:]), 15
            )
            time.sleep(1.0)
            writer.stop.set()
            writer.join(30)
            stop_stream.set()
            seen.stream_outcome = stream.result(30)
        seen.writes = writer.answers
        seen.acknowledged = writer.acknowledged
        wait_for(lambda: health(anonymous)[0] == 200, 10)
        seen.health_after = health(anonymous)[1]
        events = alice.get(f"/api/runs/{streamed['run_id']}/events", params={"limit": 1000}).json()[
            "events"
        ]
        seen.stored = Counter(e["data"].get("line") for e in events if e["type"] == "log")
    seen.server_output = "".join(server.output)
    return seen


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    """A server on PostgreSQL through a proxy, and what it did through one outage."""
    with postgres_schema() as url:
        target = StoreSettings.from_url(PG_URL)
        proxy = TcpProxy(target.pg_host, target.pg_port)
        server = Server(proxy.proxied_url(url), tmp_path_factory.mktemp("outage") / "data")
        try:
            server.start()
            yield run_outage(server, proxy)
        finally:
            server.kill()
            proxy.close()


on_postgres = pytest.mark.postgres


@on_postgres
def test_health_turns_503_within_two_seconds_of_the_database_going_away(
    outage: Observed,
) -> None:
    assert outage.health_turned_after is not None and outage.health_turned_after < 2.0


@on_postgres
def test_health_says_only_ok_or_degraded_without_counts(outage: Observed) -> None:
    assert outage.health_before == {"status": "ok"}
    assert outage.health_during["status"] == "degraded"
    assert set(outage.health_during) <= {"status", "detail"}
    assert outage.health_after == {"status": "ok"}


@on_postgres
def test_no_request_during_the_outage_is_a_500(outage: Observed) -> None:
    answers = outage.during + outage.writes
    assert not [a for a in answers if a.status >= 500 and a.status != 503]


@on_postgres
def test_every_endpoint_answers_503_unavailable_with_retry_after_or_succeeds(
    outage: Observed,
) -> None:
    for answer in outage.during:
        if answer.status == 503:
            assert '"error":"unavailable"' in answer.body, answer
            assert answer.retry_after is not None, answer
        else:
            assert answer.status in (200, 201, 202, 204, 409), answer


@on_postgres
def test_every_request_during_the_outage_answers_within_five_seconds(
    outage: Observed,
) -> None:
    slow = [a for a in outage.during + outage.writes if a.seconds > ANSWER_WITHIN or a.error]
    assert not slow


@on_postgres
def test_writes_resume_within_ten_seconds_of_the_database_coming_back(
    outage: Observed,
) -> None:
    assert outage.resumed_after is not None and outage.resumed_after < 10.0


@on_postgres
def test_every_acknowledged_event_is_stored_exactly_once(outage: Observed) -> None:
    assert outage.acknowledged
    assert all(outage.stored[m] == 1 for m in outage.acknowledged), outage.stored


@on_postgres
def test_a_stream_open_through_the_outage_ends_cleanly_or_keeps_going(
    outage: Observed,
) -> None:
    assert outage.stream_outcome in ("clean", "open")


@on_postgres
def test_the_server_logs_no_internal_error(outage: Observed) -> None:
    assert "internal error" not in outage.server_output
    assert "Exception in ASGI application" not in outage.server_output


def test_a_busy_sqlite_file_answers_503_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    server = Server(f"sqlite:///{path}", tmp_path / "data", RUNLEDGER_DB_LOCK_TIMEOUT="1")
    try:
        server.start()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            with server.client(ALICE) as alice:
                answer = call("submit", lambda: alice.post("/api/runs", json={"task": "t"}))
        finally:
            holder.rollback()
            holder.close()
    finally:
        server.kill()
    assert answer.status == 503 and '"error":"unavailable"' in answer.body, answer
    assert answer.retry_after is not None


@on_postgres
def test_killed_connections_answer_503_or_succeed_and_never_500(tmp_path: Path) -> None:
    with postgres_schema() as url:
        target = StoreSettings.from_url(PG_URL)
        proxy = TcpProxy(target.pg_host, target.pg_port)
        server = Server(proxy.proxied_url(url), tmp_path / "data")
        answers: list[Answer] = []
        try:
            server.start()
            with server.client(ALICE) as alice, server.client(RUNNER) as runner:
                run = alice.post("/api/runs", json={"task": "its connections are killed"})
                claim = runner.post(
                    "/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 5}
                ).json()
                calls = endpoint_calls(alice, runner, run.json()["run_id"], claim)
                calls.pop("report")  # keep the run going
                calls.pop("run get (min_position)")  # waits on purpose
                calls.pop("run stream")  # stays open while the database is up
                for _ in range(3):
                    proxy.drop()  # the backends are killed; the database stays up
                    answers += [call(name, send) for name, send in calls.items()]
        finally:
            server.kill()
            proxy.close()
    assert not [a for a in answers if a.error or (a.status >= 500 and a.status != 503)]
