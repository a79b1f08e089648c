"""Helpers of the runs-over-HTTP tests (`test_api_runs_*.py`): checked requests, reads, SSE.

Each of those tests gets its own server (the `server` fixture, on SQLite and on PostgreSQL), so
claims are deterministic: the runner always gets the oldest claimable run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

STREAM_TIMEOUT = httpx.Timeout(30, read=10)  # a stream that goes quiet fails, never hangs


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON answer of a request that must succeed with `status`."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:500]}"
    return response.json() if response.content else None


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The JSON error body of a request that must fail with `status` and `code`."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:500]}"
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def conflict(response: httpx.Response, current: str) -> None:
    """409 conflict naming the run's current status."""
    body = error(response, 409, "conflict")
    assert body["status"] == current, body


def submit(client: httpx.Client, **body: Any) -> dict[str, Any]:
    """Submit a run (202) and return the answer."""
    body.setdefault("task", "do the thing")
    answer = ok(client.post("/api/runs", json=body), 202)
    assert answer["status"] == "pending" and answer["sequence"] == 1, answer
    assert isinstance(answer["position"], int), answer
    return answer


def claim(runner: httpx.Client, run_id: str) -> dict[str, Any]:
    """Claim the oldest claimable run, which must be `run_id`; returns the lease."""
    lease = ok(runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 10}))
    assert lease["run"]["run_id"] == run_id, lease
    return lease


def append(runner: httpx.Client, run_id: str, token: int, *events: dict[str, Any]) -> Any:
    """Append runner events under a lease (200)."""
    body = {"fencing_token": token, "events": list(events)}
    return ok(runner.post(f"/api/runs/{run_id}/events", json=body))


def log(line: str) -> dict[str, Any]:
    """A runner `log` event."""
    return {"type": "log", "data": {"line": line}}


def report(runner: httpx.Client, run_id: str, token: int, outcome: str, **extra: Any) -> Any:
    """Report an outcome under a lease (200)."""
    body = {"fencing_token": token, "outcome": outcome, **extra}
    return ok(runner.post(f"/api/runs/{run_id}/report", json=body))


def history(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """Every event of a run, paging the JSON endpoint."""
    events: list[dict[str, Any]] = []
    while True:
        page = ok(
            client.get(f"/api/runs/{run_id}/events", params={"after": len(events), "limit": 1000})
        )
        events += page["events"]
        if not page["events"]:
            return events


def last_sequence(client: httpx.Client, run_id: str) -> int:
    """A run's last sequence from its history (not a read model)."""
    page = ok(client.get(f"/api/runs/{run_id}/events", params={"after": 10**6, "limit": 1}))
    return int(page["last_sequence"])


def read_run(client: httpx.Client, run_id: str, position: int) -> dict[str, Any]:
    """The run's read model once it includes `position`."""
    return dict(ok(client.get(f"/api/runs/{run_id}", params={"min_position": position})))


def list_runs(client: httpx.Client, position: int, **params: Any) -> httpx.Response:
    """GET /api/runs once the read models include `position`."""
    return client.get("/api/runs", params={"min_position": position, **params})


def run_ids(response: httpx.Response) -> list[str]:
    """The run ids of a listing, in order."""
    return [item["run_id"] for item in ok(response)["items"]]


def sse_frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The raw SSE frames (field -> value) as they arrive; comments (pings) are skipped.

    Parsed by hand because SSE clients carry the last `id` over to frames that have none.
    """
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = (
                f"{fields[name]}\n{value}" if name == "data" and name in fields else value
            )


@contextmanager
def sse(
    client: httpx.Client, path: str, **kwargs: Any
) -> Iterator[tuple[httpx.Response, Iterator[dict[str, str]]]]:
    """An open SSE response (which must be a 200 stream) and its frames."""
    with client.stream("GET", path, timeout=STREAM_TIMEOUT, **kwargs) as response:
        if response.status_code != 200:
            response.read()
        assert response.status_code == 200, f"{response.status_code} {response.text[:300]}"
        yield response, _after_retry(sse_frames(response))


RETRY_FRAME = {"retry": "3000"}


def _after_retry(frames: Iterator[dict[str, str]]) -> Iterator[dict[str, str]]:
    """The frames after the stream's first, which is `retry:` alone; no other has it."""
    first = next(frames, None)
    assert first == RETRY_FRAME, f"a stream starts with its retry frame, not {first}"
    for frame in frames:
        assert "retry" not in frame, f"retry is sent once, at the start: {frame}"
        yield frame


def types_of(client: httpx.Client, run_id: str) -> list[str]:
    """The types of the run's first events (one page)."""
    return [e["type"] for e in client.get(f"/api/runs/{run_id}/events").json()["events"]]


def wait_until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """check()'s first truthy value, polling every 50 ms (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
