"""Standard SSE clients end cleanly on our streams: the npm `eventsource` package (under
Node) and Chromium's own `EventSource` follow a live run, receive each event once, get
`done`, reconnect once as the spec tells them, and stop for good at the `204` that answers
a reconnect to a finished run. Named frames need a listener per type; `?named=false` sends
everything to `onmessage`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.clients import node_client
from tests.e2e.runs_helpers import append, claim, history, log, ok, submit
from tests.support import ALICE, RUNNER, Server

TYPES = ["run.submitted", "run.claimed", "log", "run.cancelled"]


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return node_client(tmp_path_factory.mktemp("node"))


def live_run(alice: httpx.Client, runner: httpx.Client) -> tuple[str, int]:
    """A claimed run with two log lines: (its id, the lease's fencing token)."""
    run = submit(alice)["run_id"]
    token = claim(runner, run)["fencing_token"]
    append(runner, run, token, log("one"), log("two"))
    return run, token


def wait_open(proc: subprocess.Popen[str]) -> None:
    """Until the client says its stream is open."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.strip() == "open", f"the client did not connect: {line!r}"


@pytest.mark.parametrize("named", [True, False], ids=["named", "unnamed"])
def test_the_npm_eventsource_client_follows_then_stops_at_204(
    srv: Server, node_dir: Path, named: bool
) -> None:
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run, token = live_run(alice, runner)
        proc = subprocess.Popen(
            ["node", "follow.mjs", srv.url, run, str(named).lower(), ",".join(TYPES)],
            cwd=node_dir,
            env={"RUNLEDGER_KEY": ALICE, "PATH": "/usr/bin:/bin:/usr/local/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_open(proc)
            time.sleep(0.3)
            append(runner, run, token, log("three"))  # live, after the client connected
            ok(alice.post(f"/api/runs/{run}/cancel", json={"reason": "seen enough"}))
            out, err = proc.communicate(timeout=90)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        events = history(alice, run)
    seen: dict[str, Any] = json.loads(out)
    last = events[-1]["sequence"]
    assert events[-1]["type"] == "run.cancelled"

    # Connected twice: first without Last-Event-ID, then (after `done` closed the stream,
    # and the `retry` wait) once more from the last event, answered 204; never again.
    assert seen["connections"] == [
        {"last_event_id": None, "status": 200},
        {"last_event_id": str(last), "status": 204},
    ], seen
    assert seen["ready_state"] == 2  # CLOSED
    assert seen["errors"][-1]["code"] == 204, seen["errors"]

    # Every event once, in order, then `done`.
    frames = seen["received"]
    assert [f["id"] for f in frames[:-1]] == [str(e["sequence"]) for e in events]
    assert [json.loads(f["data"]) for f in frames[:-1]] == events
    if named:
        assert [f["type"] for f in frames[:-1]] == [e["type"] for e in events]
        assert frames[-1]["type"] == "done" and json.loads(frames[-1]["data"]) == {}
    else:  # all through onmessage; the type is in the data
        assert {f["type"] for f in frames} == {"message"}
        assert json.loads(frames[-1]["data"]) == {"type": "done"}


FOLLOW_IN_PAGE = """([runId, named, types]) => {
    window.seen = [];
    const es = new EventSource(`/api/runs/${runId}/stream${named ? '' : '?named=false'}`);
    window.es = es;
    const keep = (e) => window.seen.push({id: e.lastEventId, type: e.type, data: e.data});
    if (named) {
        for (const t of types) es.addEventListener(t, keep);
        es.addEventListener('done', keep);
    }
    es.onmessage = keep;
    return new Promise((resolve) => { es.onopen = () => resolve(true); });
}"""


@pytest.mark.parametrize("named", [True, False], ids=["named", "unnamed"])
def test_chromiums_event_source_follows_with_the_session_cookie_then_stops_at_204(
    srv: Server, named: bool
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.clients import launch_chromium

    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner, sync_playwright() as p:
        run, token = live_run(alice, runner)
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            streams: list[tuple[str | None, int]] = []

            def answered(response: Any) -> None:
                if "/stream" in response.url:
                    asked = response.request.all_headers().get("last-event-id")
                    streams.append((asked, response.status))

            page.on("response", answered)
            page.goto(f"{srv.url}/api/server/info")  # any page of the server's origin
            signed_in = page.evaluate(
                """async (key) => (await fetch('/api/session', {method: 'POST',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({key})})).status""",
                ALICE,
            )
            assert signed_in == 204
            assert page.evaluate("document.cookie") == ""  # HttpOnly: the page cannot read it
            assert page.evaluate(FOLLOW_IN_PAGE, [run, named, TYPES]) is True
            append(runner, run, token, log("three"))
            ok(alice.post(f"/api/runs/{run}/cancel", json={"reason": "seen enough"}))
            page.wait_for_function("window.es.readyState === 2", timeout=30_000)
            page.wait_for_timeout(5000)  # longer than retry: a reconnect would show here
            frames = page.evaluate("window.seen")
            state = page.evaluate("window.es.readyState")
        finally:
            browser.close()
        events = history(alice, run)
    last = events[-1]["sequence"]
    assert streams == [(None, 200), (str(last), 204)], streams
    assert state == 2
    assert [f["id"] for f in frames[:-1]] == [str(e["sequence"]) for e in events]
    assert [json.loads(f["data"]) for f in frames[:-1]] == events
    if named:
        assert [f["type"] for f in frames[:-1]] == [e["type"] for e in events]
        assert frames[-1]["type"] == "done"
    else:
        assert {f["type"] for f in frames} == {"message"}
        assert json.loads(frames[-1]["data"]) == {"type": "done"}
