"""Small helpers for the end-to-end tests: bounded SSE reads, paged history, a runner."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import httpx
from httpx_sse import connect_sse

# Every read of a stream gives up after this long without a byte (pings are every 15 s by
# default, and the tests never wait that long on purpose): a failure cannot hang the suite.
READ_TIMEOUT = 10.0


class Frame(NamedTuple):
    """One SSE frame as the client saw it (pings dropped)."""

    id: int | None
    event: str
    data: str

    @property
    def envelope(self) -> dict[str, Any]:
        """The frame's data, decoded."""
        return json.loads(self.data)


@contextmanager
def open_stream(
    client: httpx.Client,
    path: str,
    *,
    last_event_id: int | None = None,
    params: dict[str, Any] | None = None,
    read_timeout: float = READ_TIMEOUT,
) -> Iterator[Iterator[Frame]]:
    """Connect to an SSE endpoint; yields an iterator of frames; closes the response on exit.

    Leaving the block drops the connection, like a client that goes away mid-stream.
    """
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    timeout = httpx.Timeout(30.0, read=read_timeout)
    with connect_sse(client, "GET", path, headers=headers, params=params, timeout=timeout) as src:
        assert src.response.status_code == 200, (src.response.status_code, src.response.read())
        assert src.response.headers["content-type"].startswith("text/event-stream")

        def frames() -> Iterator[Frame]:
            for sse in src.iter_sse():
                if sse.event == "message" and not sse.data:
                    continue  # a `: ping` comment surfaced by httpx-sse
                if sse.event == "done":
                    yield Frame(None, "done", sse.data)
                    continue
                assert sse.id, f"event frame without an id: {sse!r}"
                yield Frame(int(sse.id), sse.event, sse.data)

        yield frames()


def read_frames(
    client: httpx.Client,
    path: str,
    *,
    last_event_id: int | None = None,
    params: dict[str, Any] | None = None,
    until: Callable[[Frame], bool] | None = None,
    timeout: float = 20.0,
    read_timeout: float = READ_TIMEOUT,
) -> list[Frame]:
    """Frames until `done`, until `until(frame)` is true, or until the server closes.

    Fails (rather than hangs) when nothing arrives for `read_timeout` seconds or the whole
    read takes longer than `timeout`.
    """
    deadline = time.monotonic() + timeout
    out: list[Frame] = []
    with open_stream(
        client, path, last_event_id=last_event_id, params=params, read_timeout=read_timeout
    ) as frames:
        for frame in frames:
            out.append(frame)
            if frame.event == "done" or (until is not None and until(frame)):
                break
            assert time.monotonic() < deadline, f"stream {path} still going after {timeout} s"
    return out


def event_ids(frames: list[Frame]) -> list[int]:
    """The ids of the event frames (everything but `done`)."""
    return [f.id for f in frames if f.event != "done" and f.id is not None]


def run_history(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """Every stored event of a run, paged through `GET /api/runs/{id}/events`."""
    events: list[dict[str, Any]] = []
    for _ in range(10_000):
        answer = client.get(
            f"/api/runs/{run_id}/events", params={"after": len(events), "limit": 1000}
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()["events"]
        events.extend(page)
        if len(page) < 1000:
            return events
    raise AssertionError("history paging did not end")


def global_history(
    client: httpx.Client, after: int = 0, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The caller's events in global order after a position, paged through `GET /api/events`."""
    events: list[dict[str, Any]] = []
    for _ in range(10_000):
        answer = client.get("/api/events", params={**(params or {}), "after": after, "limit": 1000})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        events.extend(body["events"])
        if body["last_position"] == after and not body["events"]:
            return events
        assert body["last_position"] >= after
        after = body["last_position"]
    raise AssertionError("global paging did not end")


def submit(client: httpx.Client, task: str, **fields: Any) -> dict[str, Any]:
    """POST /api/runs; the 202 body."""
    answer = client.post("/api/runs", json={"task": task, **fields})
    assert answer.status_code == 202, answer.text
    return answer.json()


def claim(runner: httpx.Client, runner_id: str = "r1", wait: int = 5) -> dict[str, Any]:
    """Claim the oldest claimable run; the lease (fails on 204)."""
    answer = runner.post("/api/runner/claim", json={"runner_id": runner_id, "wait_seconds": wait})
    assert answer.status_code == 200, (answer.status_code, answer.text)
    return answer.json()


def deltas(tag: str, count: int) -> list[dict[str, Any]]:
    """`count` runner output events whose data says where they came from."""
    return [{"type": "agent.message.delta", "data": {"text": f"{tag}-{i}"}} for i in range(count)]


def append(
    runner: httpx.Client, run_id: str, token: int, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """POST /api/runs/{id}/events; the 200 body {sequence, position}."""
    answer = runner.post(
        f"/api/runs/{run_id}/events", json={"fencing_token": token, "events": events}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def report(runner: httpx.Client, run_id: str, token: int, outcome: str, **extra: Any) -> dict:
    """POST /api/runs/{id}/report; the 200 body."""
    answer = runner.post(
        f"/api/runs/{run_id}/report",
        json={"fencing_token": token, "outcome": outcome, **extra},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def read_model(client: httpx.Client, run_id: str, min_position: int) -> dict[str, Any]:
    """GET /api/runs/{id}?min_position=N: the read model once it includes N."""
    answer = client.get(f"/api/runs/{run_id}", params={"min_position": min_position})
    assert answer.status_code == 200, answer.text
    assert int(answer.headers["x-position"]) >= min_position
    return answer.json()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until the predicate holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


class Follower:
    """A thread that follows one stream, keeping every frame, until `done` or `stop(frame)`.

    `started` is set once the first frame arrived (the stream is connected and replaying);
    `error` holds whatever went wrong in the thread, for the test to raise.
    """

    def __init__(
        self,
        connect: Callable[[], httpx.Client],
        path: str,
        *,
        stop: Callable[[Frame], bool] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.connect = connect
        self.path = path
        self.stop = stop
        self.timeout = timeout
        self.frames: list[Frame] = []
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Follower:
        """Start following; returns self."""
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + self.timeout
            with self.connect() as client, open_stream(client, self.path) as frames:
                for frame in frames:
                    self.frames.append(frame)
                    self.started.set()
                    if frame.event == "done" or (self.stop is not None and self.stop(frame)):
                        return
                    assert time.monotonic() < deadline, f"{self.path} still going"
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()

    def seen(self, event_id: int) -> bool:
        """True once a frame with this id (or a later one) arrived."""
        return any(f.id is not None and f.id >= event_id for f in self.frames[-50:])

    def wait_started(self, timeout: float = 10.0) -> None:
        """Wait for the first frame (or an early failure)."""
        assert self.started.wait(timeout), f"{self.path}: no first frame in {timeout} s"
        if self.error is not None:
            raise self.error

    def result(self, timeout: float = 30.0) -> list[Frame]:
        """Wait for the thread to end; its frames, or its error raised here."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.path}: still following after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.frames
