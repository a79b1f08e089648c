"""Resuming a run's stream after any id yields exactly the events after it, once each, then done."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.db import Database, StoredRow
from api.config import Config
from api.envelopes import Envelope, RunDirectory
from api.http.streams import run_stream
from api.service.engine import Engine
from api.service.hub import Hub
from api.service.runtime import Runtime
from tests.support import postgres_schema

OWNER, RUNNER = "alice", "runner-1"
TIMEOUT = 10.0  # seconds for one stream; a hang is a failure, not a stuck test run
Writes = list[bool] | None  # direct writes of live frames: which go through, in turn


@pytest.fixture(scope="module")
def sqlite_runtime() -> Iterator[Runtime]:
    """One SQLite runtime for every example: each example streams a run of its own."""
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'events.db'}"
        runtime = Runtime(Config(url, Path(directory)))
        yield runtime
        runtime.close()


@pytest.fixture(scope="module")
def postgres_runtime() -> Iterator[Runtime]:
    """One PostgreSQL runtime (a fresh schema) for every example."""
    with postgres_schema() as url, tempfile.TemporaryDirectory() as directory:
        runtime = Runtime(Config(url, Path(directory)))
        yield runtime
        runtime.close()


@dataclass
class RunWriter:
    """Appends a run's history in chunks: submit, claim, output…, and a last, terminal event."""

    engine: Engine
    total: int  # the run's whole length, its last event ending it
    chunks: list[int]  # output batch sizes, used in turn
    terminal: str
    run_id: UUID | None = None
    token: int = 0
    turns: int = 0

    @property
    def version(self) -> int:
        return 0 if self.run_id is None else self.engine.get_run(self.run_id).version

    def append_until(self, length: int) -> None:
        """Append commands until the run has `length` events (never past it)."""
        while self.version < length:
            self.append_once(length)

    def append_once(self, length: int) -> None:
        """One command: one event, or a batch of outputs that stops short of `length`."""
        version, engine = self.version, self.engine
        if self.run_id is None:
            self.run_id = engine.submit_run(OWNER, "stream me").run_id
        elif version == self.total - 1:
            self.end()
        elif self.token == 0:
            self.token = engine.claim_run(self.run_id, RUNNER)[1].fencing_token
        else:
            size = min(self.chunks[self.turns % len(self.chunks)], length - version)
            size = min(size, self.total - 1 - version)
            self.turns += 1
            events = [("log", {"n": version + i + 1, "text": "✓"}) for i in range(size)]
            engine.record_output(self.run_id, RUNNER, self.token, events)

    def end(self) -> None:
        assert self.run_id is not None
        if self.terminal == "cancel" or self.token == 0:
            self.engine.cancel_run(self.run_id, OWNER, reason="enough")
        else:
            outcome = "no_changes" if self.terminal == "complete" else "failed"
            failure = {"category": "agent", "message": "gave up"}
            self.engine.report_outcome(self.run_id, RUNNER, self.token, outcome, failure=failure)


def parse_sse(stream: bytes) -> list[dict[str, str]]:
    """Split an SSE byte stream into frames of fields, as a client would."""
    assert stream.endswith(b"\n\n")
    frames = []
    for block in stream[:-2].split(b"\n\n"):
        fields: dict[str, str] = {}
        for line in block.decode().split("\n"):
            name, _, value = line.partition(": ")
            assert name not in fields, block
            fields[name] = value
        frames.append(fields)
    return frames


def check_stream(frames: list[dict[str, str]], run_id: UUID, after: int, total: int) -> None:
    """The retry frame, exactly the events after the resume point, each with its sequence as
    id, then done."""
    retry, *events, done = frames
    assert retry == {"retry": "3000"}
    assert done == {"event": "done", "data": "{}"}
    assert [int(f["id"]) for f in events] == list(range(after + 1, total + 1))
    for frame in events:
        body = orjson.loads(frame["data"])
        assert body["run_id"] == str(run_id) and body["sequence"] == int(frame["id"])
        assert body["type"] == frame["event"]


async def collect(frames: Any, received: list[bytes], progress: asyncio.Event) -> None:
    """Read a stream to its end, waking `progress` at each frame."""
    async for frame in frames:
        received.append(frame)
        progress.set()


def count_events(received: list[bytes]) -> int:
    """How many event frames (frames with an id) were received so far."""
    return sum(line.startswith(b"id: ") for line in b"".join(received).split(b"\n"))


class Feed:
    """The app's change feed in miniature: publishes each new stored event to the hub."""

    def __init__(self, db: Database, hub: Hub) -> None:
        self.db, self.hub = db, hub
        self.directory = RunDirectory(db)
        self.position = db.head()  # what is stored was published before the stream began

    def pump(self) -> None:
        rows = self.db.events_after(self.position)
        self.position = rows[-1].position
        self.hub.publish_threadsafe([self.directory.stamp(Envelope.from_row(r)) for r in rows])


class ReadThenRun:
    """The database as the stream sees it; `then` runs right after its first replay read."""

    def __init__(self, db: Database, then: Callable[[], None]) -> None:
        self.db, self.then = db, then

    def run_events(self, run_id: UUID, after: int = 0, limit: int = 1000) -> list[StoredRow]:
        rows = self.db.run_events(run_id, after, limit)
        then, self.then = self.then, lambda: None
        then()
        return rows


async def stream_live(
    runtime: Runtime, writer: RunWriter, stored: int, after: int, when: str, writes: Writes
) -> bytes:
    """Stream an unfinished run while the rest of it is appended and published like the app.

    The rest is written `racing` the replay, `after_replay` (all live), or `inside_replay`:
    committed and published between the stream's replay read and its next step. With
    `writes`, live frames are also written from the publish itself, as the SSE response
    does; the pattern says, call by call in turn, whether such a write goes through (False:
    it cannot go now, and the stream's task writes the event in its turn).
    """
    hub = Hub()
    hub.loop = asyncio.get_running_loop()
    feed = Feed(runtime.db, hub)

    def write_the_rest() -> None:
        while writer.version < writer.total:
            writer.append_once(writer.total)
            feed.pump()

    source = ReadThenRun(runtime.db, write_the_rest) if when == "inside_replay" else runtime.db
    assert writer.run_id is not None
    received: list[bytes] = []
    progress = asyncio.Event()
    calls = [0]

    def write_now(frame: bytes) -> bool:
        assert writes is not None
        accepted = writes[calls[0] % len(writes)]
        calls[0] += 1
        if accepted:
            received.append(frame)
            progress.set()
        return accepted

    direct = None if writes is None else write_now
    stream = run_stream(hub, source, writer.run_id, after, False, write=direct)  # type: ignore[arg-type]
    reader = asyncio.create_task(collect(stream, received, progress), name="sse")
    await asyncio.sleep(0)  # the stream starts: it registers with the hub before replaying
    assert len(hub.subscribers) == 1
    while when == "after_replay" and count_events(received) < stored - after:
        progress.clear()
        await asyncio.wait_for(progress.wait(), TIMEOUT)
    writing = [] if when == "inside_replay" else [asyncio.to_thread(write_the_rest)]
    await asyncio.wait_for(asyncio.gather(*writing, reader), TIMEOUT)
    assert not hub.subscribers
    if writes is not None and all(writes) and when == "after_replay" and writer.total > stored + 1:
        assert calls[0] > 0  # live events did go the direct way (all but the last can)
    return b"".join(received)


async def stream_stored(runtime: Runtime, run_id: UUID, after: int) -> bytes:
    """Stream a run that has ended, as the app does for a finished run."""
    hub = Hub()
    hub.loop = asyncio.get_running_loop()
    finished = runtime.engine.get_run(run_id).is_terminal
    received: list[bytes] = []
    stream = run_stream(hub, runtime.db, run_id, after, finished)
    await asyncio.wait_for(collect(stream, received, asyncio.Event()), TIMEOUT)
    return b"".join(received)


chunk_sizes = st.lists(st.integers(1, 7), min_size=1, max_size=4)
direct_writes = st.none() | st.lists(st.booleans(), min_size=1, max_size=5)
terminals = st.sampled_from(["cancel", "complete", "fail"])


@st.composite
def finished_runs(draw: st.DrawFn) -> tuple[int, int, list[int], str]:
    """(n, k, chunks, terminal): a run of n events that ended, resumed after k."""
    total = draw(st.integers(2, 60))
    return total, draw(st.integers(0, total)), draw(chunk_sizes), draw(terminals)


@st.composite
def live_runs(draw: st.DrawFn) -> tuple[int, int, int, list[int], str, str, Writes]:
    """(n stored, k, total, chunks, terminal, when, writes): resumed while still running."""
    stored = draw(st.integers(1, 59))
    total = draw(st.integers(stored + 1, min(stored + 20, 60)))
    after = draw(st.integers(0, stored))
    when = draw(st.sampled_from(["racing", "after_replay", "inside_replay"]))
    return stored, after, total, draw(chunk_sizes), draw(terminals), when, draw(direct_writes)


def check_finished(runtime: Runtime, case: tuple[int, int, list[int], str]) -> None:
    total, after, chunks, terminal = case
    writer = RunWriter(runtime.engine, total, chunks, terminal)
    writer.append_until(total)
    assert writer.run_id is not None and runtime.engine.get_run(writer.run_id).is_terminal
    stream = asyncio.run(stream_stored(runtime, writer.run_id, after))
    check_stream(parse_sse(stream), writer.run_id, after, total)


def check_live(runtime: Runtime, case: tuple[int, int, int, list[int], str, str, Writes]) -> None:
    stored, after, total, chunks, terminal, when, writes = case
    writer = RunWriter(runtime.engine, total, chunks, terminal)
    writer.append_until(stored)
    assert writer.run_id is not None and writer.version == stored
    stream = asyncio.run(stream_live(runtime, writer, stored, after, when, writes))
    check_stream(parse_sse(stream), writer.run_id, after, total)


@settings(max_examples=40, deadline=None)
@given(case=finished_runs())
def test_on_sqlite_a_finished_run_resumes_with_exactly_the_rest(
    sqlite_runtime: Runtime, case: tuple[int, int, list[int], str]
) -> None:
    check_finished(sqlite_runtime, case)


@settings(max_examples=40, deadline=None)
@given(case=live_runs())
def test_on_sqlite_a_live_run_resumes_with_exactly_the_rest_then_done(
    sqlite_runtime: Runtime, case: tuple[int, int, int, list[int], str, str, Writes]
) -> None:
    check_live(sqlite_runtime, case)


@pytest.mark.postgres
@settings(max_examples=12, deadline=None)
@given(case=finished_runs())
def test_on_postgres_a_finished_run_resumes_with_exactly_the_rest(
    postgres_runtime: Runtime, case: tuple[int, int, list[int], str]
) -> None:
    check_finished(postgres_runtime, case)


@pytest.mark.postgres
@settings(max_examples=12, deadline=None)
@given(case=live_runs())
def test_on_postgres_a_live_run_resumes_with_exactly_the_rest_then_done(
    postgres_runtime: Runtime, case: tuple[int, int, int, list[int], str, str, Writes]
) -> None:
    check_live(postgres_runtime, case)
