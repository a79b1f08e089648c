"""The contract's limits: numbers past 64 bits, bodies past 1 MiB, positions not yet reached.

Odd values may be accepted or refused but never crash the server; a body over the limit is 413
and a position the read models do not reach is 503; what is refused changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.contract_helpers import EV, HUGE, LOG, REPORT, RUN, Probe, R, World, assert_error
from tests.support import ALICE, RUNNER

MiB = 1024 * 1024


# -- numbers and characters the store cannot take: never a 500 ---------------------------------


# A request the server may accept or refuse (the contract allows either), but not crash on.
Edge = Probe


EDGES = [
    Edge("get-at-sequence-huge", "GET", RUN, params={"at_sequence": HUGE}),  # 404 or 400
    Edge("run-events-after-huge", "GET", EV, params={"after": HUGE}),
    Edge("global-events-after-huge", "GET", "/api/events", params={"after": HUGE}),
    Edge("list-limit-huge", "GET", "/api/runs", params={"limit": HUGE}),
    Edge("finished-stream-after-huge", "GET", "/api/runs/{done}/stream", params={"after": HUGE}),
    Edge(
        "finished-stream-last-event-id-huge",
        "GET",
        "/api/runs/{done}/stream",
        headers={"Last-Event-ID": str(HUGE)},
    ),
    Edge(
        "global-stream-last-event-id-huge",
        "GET",
        "/api/events/stream",
        headers={"Last-Event-ID": str(HUGE)},
    ),
    Edge("submit-task-with-nul", "POST", "/api/runs", content=b'{"task": "a\\u0000b"}'),
    Edge(
        "events-token-huge",
        "POST",
        EV,
        key=R,
        json={"fencing_token": HUGE, "events": [LOG]},
    ),
    Edge(
        "events-huge-integer-in-data",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"type": "log", "data": {"n": HUGE}}]},
    ),
    Edge(
        "events-gate-id-with-nul",
        "POST",
        EV,
        key=R,
        json={
            "fencing_token": "$token",
            "events": [{"type": "gate.opened", "data": {"gate_id": "g\u0000", "kind": "question"}}],
        },
    ),
    Edge(
        "steer-instruction-with-nul",
        "POST",
        RUN + "/steer",
        content=b'{"kind": "amend", "instruction": "a\\u0000b"}',
    ),
    Edge(
        "report-huge-diff-stats",  # last: if it is accepted, main goes to review
        "POST",
        REPORT,
        key=R,
        json={
            "fencing_token": "$token",
            "outcome": "changes",
            "diff_stats": {"files": HUGE, "added": 1, "removed": 1},
        },
    ),
]


def read_briefly(response: httpx.Response) -> str:
    """A finished answer's body; for an event stream, what comes before 3 s of quiet.

    A stream that stays open and quiet is fine; one the server breaks off is not.
    """
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        return response.read().decode()
    received = []
    try:
        for chunk in response.iter_text():
            received.append(chunk)
            if "event: done" in "".join(received):
                break
    except httpx.ReadTimeout:
        pass  # open and idle: nothing after the resume point yet
    return "".join(received)


@pytest.mark.parametrize("edge", EDGES, ids=[e.name for e in EDGES])
def test_out_of_range_numbers_and_odd_characters_never_give_a_500(world: World, edge: Edge) -> None:
    before = world.snapshot()
    path, kwargs = edge.arguments(world)
    timeout = httpx.Timeout(15, read=3)
    with (
        world.client(edge.key) as client,
        client.stream(edge.method, path, timeout=timeout, **kwargs) as response,
    ):
        try:
            text = read_briefly(response)
        except httpx.RemoteProtocolError as exc:
            pytest.fail(f"the server broke off its answer ({response.status_code}): {exc}")
        status, headers = response.status_code, response.headers
    assert status < 500, f"{status} {text[:300]}"
    if status >= 400:
        assert_error(status, text, headers, status, json.loads(text)["error"])
        world.assert_unchanged(before)
    elif edge.path.endswith("/stream") and "{done}" in edge.path:
        assert "event: done" in text, text  # a finished run's stream still ends with done
    elif edge.method == "POST":
        # Accepted: what was stored must read back.
        run_id = json.loads(text)["run_id"] if edge.path == "/api/runs" else world.main
        history = world.alice.get(f"/api/runs/{run_id}/events")
        assert history.status_code == 200, history.text


# -- body limit ---------------------------------------------------------------------------------


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body httpx must send chunked: no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_body_over_one_mib_is_413_with_or_without_content_length(world: World) -> None:
    big_submit = json.dumps({"task": "x" * (MiB + 10)}).encode()
    line = {"type": "log", "data": {"line": "y" * 4000}}
    big_events = json.dumps({"fencing_token": world.token, "events": [line] * 300}).encode()
    big_cancel = json.dumps({"reason": "z" * (MiB + 10)}).encode()
    assert min(len(big_submit), len(big_events), len(big_cancel)) > MiB
    requests = [
        (ALICE, "/api/runs", big_submit),
        (RUNNER, f"/api/runs/{world.main}/events", big_events),
        (ALICE, f"/api/runs/{world.main}/cancel", big_cancel),
    ]
    before = world.snapshot()
    for key, path, data in requests:
        for label, content in (("content-length", data), ("chunked", _chunks(data))):
            with world.client(key) as client:
                request = client.build_request("POST", path, content=content)
                assert ("content-length" in request.headers) == (label == "content-length")
                answer = client.send(request)
                assert_error(
                    answer.status_code, answer.text, answer.headers, 413, "payload_too_large"
                )
    world.assert_unchanged(before)


# -- read-your-writes: a position the read models do not reach ----------------------------------


def test_a_min_position_the_read_models_do_not_reach_is_503_not_caught_up(world: World) -> None:
    started = time.monotonic()
    answer = world.alice.get("/api/runs", params={"min_position": 10**12})
    waited = time.monotonic() - started
    assert_error(answer.status_code, answer.text, answer.headers, 503, "not_caught_up")
    assert 3 <= waited < 15, f"waited {waited:.1f} s (the contract says up to 5 s)"
