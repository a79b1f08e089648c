"""The HTTP contract at its edges: bad input, keys and roles, body limits, public endpoints.

One server per store for the whole module: these tests send requests that must be refused (or,
for a few edge values, may be accepted but must not crash), so they can share it. Every refused
request is checked for its status and JSON error shape, and for having changed nothing: no new
event anywhere in alice's log, and the claimed run's last sequence unchanged.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import ALICE, BOB, RUNNER, Server, postgres_schema

MiB = 1024 * 1024
NOT_A_UUID = "not-a-uuid"
HUGE = 10**23  # past any 64-bit integer column


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One `runledger serve` per store for the whole module."""
    with ExitStack() as stack:
        base = tmp_path_factory.mktemp(f"contract-{request.param}")
        if request.param == "sqlite":
            url = f"sqlite:///{base / 'events.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        srv = Server(url, base / "data").start()
        stack.callback(srv.kill)
        yield srv


@dataclass
class World:
    """Alice's runs on the shared server: `main` is claimed (in progress) under `token`."""

    server: Server
    alice: httpx.Client  # for setup and checks only: never sent anything that is refused
    main: str
    token: int
    done: str
    bait: str
    mark: int = 0

    def fresh(self) -> str:
        """A new pending run of alice's, for a case that must not touch `main`."""
        answer = self.alice.post("/api/runs", json={"task": "a fresh run"})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["run_id"])

    def snapshot(self) -> tuple[int, int]:
        """(alice's latest event position, main's last sequence), right now."""
        self.mark = latest_position(self.alice, self.mark)
        return self.mark, last_sequence(self.alice, self.main)

    def assert_unchanged(self, before: tuple[int, int]) -> None:
        """No event was appended to any of alice's runs, and main did not move."""
        mark, main_sequence = before
        new = self.alice.get("/api/events", params={"after": mark, "limit": 1000})
        assert new.status_code == 200, new.text
        assert new.json()["events"] == [], "a refused request appended events"
        assert last_sequence(self.alice, self.main) == main_sequence

    def client(self, key: str) -> httpx.Client:
        """A client of its own for one case (a refused request may close its connection)."""
        return self.server.client(key, verify=False)


def latest_position(client: httpx.Client, after: int) -> int:
    """The position of the caller's latest event (paging on from `after`)."""
    while True:
        page = client.get("/api/events", params={"after": after, "limit": 1000})
        assert page.status_code == 200, page.text
        events = page.json()["events"]
        if not events:
            return after
        after = events[-1]["position"]


def last_sequence(client: httpx.Client, run_id: str) -> int:
    """A run's last sequence, from its event history (not a read model)."""
    answer = client.get(f"/api/runs/{run_id}/events", params={"after": 10**6, "limit": 1})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["last_sequence"])


@pytest.fixture(scope="module")
def world(shared_server: Server) -> Iterator[World]:
    """main: claimed by the runner; done: cancelled; bait: pending (something to claim)."""
    srv = shared_server
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        main = alice.post("/api/runs", json={"task": "the main run"}).json()["run_id"]
        claim = runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 10})
        assert claim.status_code == 200, claim.text
        assert claim.json()["run"]["run_id"] == main
        done = alice.post("/api/runs", json={"task": "a finished run"}).json()["run_id"]
        cancelled = alice.post(f"/api/runs/{done}/cancel", json={"reason": "done"})
        assert cancelled.status_code == 200, cancelled.text
        bait = alice.post("/api/runs", json={"task": "claim me if you dare"}).json()["run_id"]
        yield World(srv, alice, main, int(claim.json()["fencing_token"]), done, bait)


def fill(value: Any, world: World) -> Any:
    """Replace the placeholder "$token" anywhere in a JSON body with main's fencing token."""
    if value == "$token":
        return world.token
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value


def assert_error(
    status: int, body_text: str, headers: httpx.Headers, want_status: int, want_error: str
) -> dict[str, Any]:
    """The answer is the JSON error the contract names."""
    assert status == want_status, f"{status} {body_text[:500]}"
    assert headers.get("content-type", "").startswith("application/json"), headers
    body = json.loads(body_text)
    assert body["error"] == want_error, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def assert_invalid(
    status: int, body_text: str, headers: httpx.Headers, want_field: str | None
) -> None:
    """A 400 invalid_request whose `errors` list names the field at fault (when there is one)."""
    body = assert_error(status, body_text, headers, 400, "invalid_request")
    errors = body.get("errors")
    assert isinstance(errors, list), body
    for item in errors:
        assert isinstance(item["field"], str) and isinstance(item["message"], str), body
    if want_field is not None:
        named = [str(e["field"]).lower() for e in errors]
        want = want_field.lower()
        assert any(f == want or f.startswith(want + ".") for f in named), (
            f"errors should name {want_field!r}: {errors}"
        )


# -- bad input: a table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request that must be refused."""

    name: str
    method: str
    path: str
    key: str = ALICE
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    field: str | None = None
    status: int = 400
    error: str = "invalid_request"


def _forged_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


LOG = {"type": "log", "data": {"line": "hello"}}
RUN = "/api/runs/{main}"
EV = RUN + "/events"
REPORT = RUN + "/report"
R = RUNNER

CASES = [
    # POST /api/runs
    Case("submit-malformed-json", "POST", "/api/runs", content=b'{"task": "x"'),
    Case("submit-empty-body", "POST", "/api/runs", content=b""),
    Case("submit-json-array", "POST", "/api/runs", json=[{"task": "x"}]),
    Case("submit-json-string", "POST", "/api/runs", json="fix it"),
    Case("submit-json-null", "POST", "/api/runs", content=b"null"),
    Case("submit-invalid-utf8", "POST", "/api/runs", content=b'{"task": "\xff\xfe"}'),
    Case("submit-nan", "POST", "/api/runs", content=b'{"task": "x", "max_attempts": NaN}'),
    Case(
        "submit-deeply-nested",
        "POST",
        "/api/runs",
        content=b'{"task": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ),
    Case(
        "submit-form-encoded",
        "POST",
        "/api/runs",
        content=b"task=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case("submit-missing-task", "POST", "/api/runs", json={}, field="task"),
    Case("submit-empty-task", "POST", "/api/runs", json={"task": ""}, field="task"),
    Case("submit-blank-task", "POST", "/api/runs", json={"task": "  \n\t "}, field="task"),
    Case("submit-task-number", "POST", "/api/runs", json={"task": 42}, field="task"),
    Case("submit-task-null", "POST", "/api/runs", json={"task": None}, field="task"),
    Case("submit-task-list", "POST", "/api/runs", json={"task": ["a"]}, field="task"),
    Case(
        "submit-max-attempts-string",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": "3"},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-fraction",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": 2.5},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-bool",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": True},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-0",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": 0},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-11",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": 11},
        field="max_attempts",
    ),
    Case(
        "submit-max-attempts-huge",
        "POST",
        "/api/runs",
        json={"task": "x", "max_attempts": HUGE},
        field="max_attempts",
    ),
    Case(
        "submit-unknown-field",
        "POST",
        "/api/runs",
        json={"task": "x", "colour": "blue"},
        field="colour",
    ),
    Case(
        "submit-auto-approve-string",
        "POST",
        "/api/runs",
        json={"task": "x", "auto_approve_tools": "yes"},
        field="auto_approve_tools",
    ),
    Case(
        "submit-project-id-not-uuid",
        "POST",
        "/api/runs",
        json={"task": "x", "project_id": "proj-1"},
        field="project_id",
    ),
    Case(
        "submit-parent-id-not-uuid",
        "POST",
        "/api/runs",
        json={"task": "x", "parent_run_id": 12},
        field="parent_run_id",
    ),
    Case("submit-agent-empty", "POST", "/api/runs", json={"task": "x", "agent": ""}, field="agent"),
    Case("submit-model-number", "POST", "/api/runs", json={"task": "x", "model": 4}, field="model"),
    Case(
        "submit-branch-list",
        "POST",
        "/api/runs",
        json={"task": "x", "originating_branch": ["main"]},
        field="originating_branch",
    ),
    # GET /api/runs
    Case("list-status-bogus", "GET", "/api/runs", params={"status": "bogus"}, field="status"),
    Case(
        "list-status-bogus-among-valid",
        "GET",
        "/api/runs",
        params={"status": ["pending", "bogus"]},
        field="status",
    ),
    Case("list-limit-0", "GET", "/api/runs", params={"limit": 0}, field="limit"),
    Case("list-limit-501", "GET", "/api/runs", params={"limit": 501}, field="limit"),
    Case("list-limit-negative", "GET", "/api/runs", params={"limit": -3}, field="limit"),
    Case("list-limit-word", "GET", "/api/runs", params={"limit": "ten"}, field="limit"),
    Case("list-cursor-garbage", "GET", "/api/runs", params={"cursor": "!!!"}, field="cursor"),
    Case("list-cursor-word", "GET", "/api/runs", params={"cursor": "page2"}, field="cursor"),
    Case(
        "list-cursor-forged-huge",
        "GET",
        "/api/runs",
        params={"cursor": _forged_cursor(f"p{HUGE}")},
        field="cursor",
    ),
    Case("list-project-bad", "GET", "/api/runs", params={"project_id": "x"}, field="project_id"),
    Case(
        "list-parent-bad", "GET", "/api/runs", params={"parent_run_id": "x"}, field="parent_run_id"
    ),
    Case("list-archived-bad", "GET", "/api/runs", params={"archived": "maybe"}, field="archived"),
    Case(
        "list-min-position-negative",
        "GET",
        "/api/runs",
        params={"min_position": -1},
        field="min_position",
    ),
    Case(
        "list-min-position-word",
        "GET",
        "/api/runs",
        params={"min_position": "soon"},
        field="min_position",
    ),
    Case(
        "list-x-min-position-word",
        "GET",
        "/api/runs",
        headers={"X-Min-Position": "soon"},
        field="X-Min-Position",
    ),
    # GET /api/runs/{id}
    Case("get-bad-uuid", "GET", f"/api/runs/{NOT_A_UUID}", field="run_id"),
    Case("get-at-sequence-0", "GET", RUN, params={"at_sequence": 0}, field="at_sequence"),
    Case("get-at-sequence-negative", "GET", RUN, params={"at_sequence": -2}, field="at_sequence"),
    Case("get-at-sequence-word", "GET", RUN, params={"at_sequence": "one"}, field="at_sequence"),
    Case("get-min-position-word", "GET", RUN, params={"min_position": "x"}, field="min_position"),
    # commands: bad ids in the path
    *[
        Case(f"{verb}-bad-uuid", "POST", f"/api/runs/{NOT_A_UUID}/{verb}", json={}, field="run_id")
        for verb in ("pause", "resume", "cancel", "archive", "retry")
    ],
    Case(
        "review-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/review",
        json={"approved": True},
        field="run_id",
    ),
    Case("delete-bad-uuid", "DELETE", f"/api/runs/{NOT_A_UUID}", field="run_id"),
    Case("delete-bad-uuid-almost", "DELETE", "/api/runs/1234", field="run_id"),
    # commands: bad bodies (pause/resume/archive/retry take none, so garbage is still garbage)
    Case("pause-malformed-json", "POST", "/api/runs/{fresh}/pause", content=b'{"x'),
    Case("pause-json-array", "POST", "/api/runs/{fresh}/pause", json=[1]),
    Case("pause-unknown-field", "POST", "/api/runs/{fresh}/pause", json={"now": True}, field="now"),
    Case("resume-malformed-json", "POST", "/api/runs/{fresh}/resume", content=b"{{"),
    Case("archive-malformed-json", "POST", "/api/runs/{fresh}/archive", content=b"[,"),
    Case(
        "archive-unknown-field",
        "POST",
        "/api/runs/{fresh}/archive",
        json={"force": True},
        field="force",
    ),
    Case("retry-malformed-json", "POST", "/api/runs/{fresh}/retry", content=b"{garbage"),
    Case("cancel-malformed-json", "POST", RUN + "/cancel", content=b'{"reason": '),
    Case("cancel-json-array", "POST", RUN + "/cancel", json=["now"]),
    Case("cancel-reason-number", "POST", RUN + "/cancel", json={"reason": 5}, field="reason"),
    Case(
        "cancel-unknown-field",
        "POST",
        RUN + "/cancel",
        json={"reason": "x", "force": True},
        field="force",
    ),
    Case("review-malformed-json", "POST", RUN + "/review", content=b"{'approved': true}"),
    Case("review-missing-approved", "POST", RUN + "/review", json={}, field="approved"),
    Case(
        "review-approved-string",
        "POST",
        RUN + "/review",
        json={"approved": "yes"},
        field="approved",
    ),
    Case("review-approved-int", "POST", RUN + "/review", json={"approved": 1}, field="approved"),
    Case(
        "review-approve-and-request-changes",
        "POST",
        RUN + "/review",
        json={"approved": True, "request_changes": True},
        field="request_changes",
    ),
    Case(
        "review-comment-number",
        "POST",
        RUN + "/review",
        json={"approved": False, "comment": 3},
        field="comment",
    ),
    Case(
        "review-unknown-field",
        "POST",
        RUN + "/review",
        json={"approved": False, "score": 3},
        field="score",
    ),
    # POST /api/runner/claim (a pending run is waiting: a bad claim must not take it)
    Case("claim-malformed-json", "POST", "/api/runner/claim", key=R, content=b"{"),
    Case("claim-json-array", "POST", "/api/runner/claim", key=R, json=["r1"]),
    Case("claim-missing-runner-id", "POST", "/api/runner/claim", key=R, json={}, field="runner_id"),
    Case(
        "claim-runner-id-empty",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": ""},
        field="runner_id",
    ),
    Case(
        "claim-runner-id-number",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": 7},
        field="runner_id",
    ),
    Case(
        "claim-wait-negative",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": "r1", "wait_seconds": -1},
        field="wait_seconds",
    ),
    Case(
        "claim-wait-31",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": "r1", "wait_seconds": 31},
        field="wait_seconds",
    ),
    Case(
        "claim-wait-string",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": "r1", "wait_seconds": "5"},
        field="wait_seconds",
    ),
    Case(
        "claim-unknown-field",
        "POST",
        "/api/runner/claim",
        key=R,
        json={"runner_id": "r1", "greedy": True},
        field="greedy",
    ),
    # POST /api/runs/{id}/events (main's lease is current: only validation may refuse these)
    Case("events-malformed-json", "POST", EV, key=R, content=b'{"fencing_token": 1, "events": ['),
    Case("events-json-array", "POST", EV, key=R, json=[LOG]),
    Case("events-missing-token", "POST", EV, key=R, json={"events": [LOG]}, field="fencing_token"),
    Case(
        "events-token-string",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "1", "events": [LOG]},
        field="fencing_token",
    ),
    Case(
        "events-token-zero",
        "POST",
        EV,
        key=R,
        json={"fencing_token": 0, "events": [LOG]},
        field="fencing_token",
    ),
    Case(
        "events-missing-events", "POST", EV, key=R, json={"fencing_token": "$token"}, field="events"
    ),
    Case(
        "events-zero-events",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": []},
        field="events",
    ),
    Case(
        "events-501-events",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [LOG] * 501},
        field="events",
    ),
    Case(
        "events-not-a-list",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": LOG},
        field="events",
    ),
    Case(
        "events-unknown-type",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"type": "agent.explode", "data": {}}]},
        field="events",
    ),
    Case(
        "events-unknown-type-after-good-ones",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [LOG, LOG, LOG, {"type": "run.completed"}]},
        field="events",
    ),
    Case(
        "events-missing-type",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"data": {}}]},
        field="events",
    ),
    Case(
        "events-type-empty",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"type": "", "data": {}}]},
        field="events",
    ),
    Case(
        "events-data-string",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{"type": "log", "data": "hello"}]},
        field="events",
    ),
    Case(
        "events-event-unknown-field",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [{**LOG, "at": "now"}]},
        field="events",
    ),
    Case(
        "events-unknown-field",
        "POST",
        EV,
        key=R,
        json={"fencing_token": "$token", "events": [LOG], "batch": 1},
        field="batch",
    ),
    Case(
        "events-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/events",
        key=R,
        json={"fencing_token": "$token", "events": [LOG]},
        field="run_id",
    ),
    # POST /api/runs/{id}/report (main's lease is current: only validation may refuse these)
    Case("report-malformed-json", "POST", REPORT, key=R, content=b'{"outcome": "changes",}'),
    Case("report-json-array", "POST", REPORT, key=R, json=["changes"]),
    Case(
        "report-missing-outcome",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token"},
        field="outcome",
    ),
    Case(
        "report-outcome-bogus",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "great"},
        field="outcome",
    ),
    Case(
        "report-missing-token",
        "POST",
        REPORT,
        key=R,
        json={"outcome": "no_changes"},
        field="fencing_token",
    ),
    Case(
        "report-token-negative",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": -1, "outcome": "no_changes"},
        field="fencing_token",
    ),
    Case(
        "report-diff-stats-negative",
        "POST",
        REPORT,
        key=R,
        json={
            "fencing_token": "$token",
            "outcome": "changes",
            "diff_stats": {"files": -1, "added": 0, "removed": 0},
        },
        field="diff_stats",
    ),
    Case(
        "report-diff-stats-string",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "changes", "diff_stats": "lots"},
        field="diff_stats",
    ),
    Case(
        "report-diff-stats-incomplete",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "changes", "diff_stats": {"files": 1}},
        field="diff_stats",
    ),
    Case(
        "report-failure-category-bogus",
        "POST",
        REPORT,
        key=R,
        json={
            "fencing_token": "$token",
            "outcome": "failed",
            "failure": {"category": "cosmic-rays", "message": "m"},
        },
        field="failure",
    ),
    Case(
        "report-failure-message-missing",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "failed", "failure": {"category": "agent"}},
        field="failure",
    ),
    Case(
        "report-tree-hash-number",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "changes", "tree_hash": 123},
        field="tree_hash",
    ),
    Case(
        "report-unknown-field",
        "POST",
        REPORT,
        key=R,
        json={"fencing_token": "$token", "outcome": "no_changes", "mood": "happy"},
        field="mood",
    ),
    Case(
        "report-bad-uuid",
        "POST",
        f"/api/runs/{NOT_A_UUID}/report",
        key=R,
        json={"fencing_token": "$token", "outcome": "no_changes"},
        field="run_id",
    ),
    # GET /api/runs/{id}/events
    Case("run-events-after-negative", "GET", EV, params={"after": -1}, field="after"),
    Case("run-events-after-word", "GET", EV, params={"after": "start"}, field="after"),
    Case("run-events-limit-0", "GET", EV, params={"limit": 0}, field="limit"),
    Case("run-events-limit-1001", "GET", EV, params={"limit": 1001}, field="limit"),
    Case("run-events-limit-fraction", "GET", EV, params={"limit": 1.5}, field="limit"),
    Case("run-events-bad-uuid", "GET", f"/api/runs/{NOT_A_UUID}/events", field="run_id"),
    # GET /api/runs/{id}/stream
    *[
        Case(
            f"run-stream-last-event-id-{label}",
            "GET",
            RUN + "/stream",
            headers={"Last-Event-ID": value},
            field="Last-Event-ID",
        )
        for label, value in (("word", "seven"), ("negative", "-1"), ("fraction", "1.5"))
    ],
    Case("run-stream-after-negative", "GET", RUN + "/stream", params={"after": -1}, field="after"),
    Case("run-stream-after-word", "GET", RUN + "/stream", params={"after": "x"}, field="after"),
    Case("run-stream-bad-uuid", "GET", f"/api/runs/{NOT_A_UUID}/stream", field="run_id"),
    # GET /api/events and /api/events/stream
    Case("global-after-negative", "GET", "/api/events", params={"after": -5}, field="after"),
    Case("global-limit-0", "GET", "/api/events", params={"limit": 0}, field="limit"),
    Case("global-limit-1001", "GET", "/api/events", params={"limit": 1001}, field="limit"),
    Case("global-run-id-bad", "GET", "/api/events", params={"run_id": "r1"}, field="run_id"),
    Case(
        "global-project-id-bad",
        "GET",
        "/api/events",
        params={"project_id": "p"},
        field="project_id",
    ),
    Case("global-type-empty", "GET", "/api/events", params={"type": ""}, field="type"),
    Case(
        "global-stream-last-event-id-word",
        "GET",
        "/api/events/stream",
        headers={"Last-Event-ID": "latest"},
        field="Last-Event-ID",
    ),
    Case(
        "global-stream-after-negative",
        "GET",
        "/api/events/stream",
        params={"after": -1},
        field="after",
    ),
    Case(
        "global-stream-run-id-bad",
        "GET",
        "/api/events/stream",
        params={"run_id": "r1"},
        field="run_id",
    ),
]


def send(world: World, case: Case, fresh: str | None = None) -> tuple[int, str, httpx.Headers]:
    """Send a case on its own connection; never waits on an event stream's body."""
    path = case.path.format(main=world.main, done=world.done, fresh=fresh)
    kwargs: dict[str, Any] = {"params": case.params, "headers": case.headers}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.json is not None:
        kwargs["json"] = fill(case.json, world)
    with (
        world.client(case.key) as client,
        client.stream(case.method, path, timeout=15, **kwargs) as response,
    ):
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, "<an event stream>", response.headers
        return response.status_code, response.read().decode(), response.headers


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_with_a_json_error_and_changes_nothing(
    world: World, case: Case
) -> None:
    fresh = world.fresh() if "{fresh}" in case.path else None
    before = world.snapshot()
    status, text, headers = send(world, case, fresh)
    if case.status == 400:
        assert_invalid(status, text, headers, case.field)
    else:
        assert_error(status, text, headers, case.status, case.error)
    world.assert_unchanged(before)


# -- numbers and characters the store cannot take: never a 500 ---------------------------------


@dataclass(frozen=True)
class Edge:
    """A request the server may accept or refuse (the contract allows either), but not crash on."""

    name: str
    method: str
    path: str
    key: str = ALICE
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


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
    path = edge.path.format(main=world.main, done=world.done)
    kwargs: dict[str, Any] = {"params": edge.params, "headers": edge.headers}
    if edge.content is not None:
        kwargs["content"] = edge.content
    elif edge.json is not None:
        kwargs["json"] = fill(edge.json, world)
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


# -- keys and roles -----------------------------------------------------------------------------

USER_ENDPOINTS = [
    ("GET", "/api/runs", None),
    ("POST", "/api/runs", {"task": "x"}),
    ("GET", "/api/runs/{main}", None),
    ("DELETE", "/api/runs/{main}", None),
    ("POST", "/api/runs/{main}/pause", {}),
    ("POST", "/api/runs/{main}/resume", {}),
    ("POST", "/api/runs/{main}/cancel", {"reason": "r"}),
    ("POST", "/api/runs/{main}/review", {"approved": True}),
    ("POST", "/api/runs/{main}/archive", {}),
    ("POST", "/api/runs/{main}/retry", {}),
    ("GET", "/api/runs/{main}/events", None),
    ("GET", "/api/runs/{main}/stream", None),
    ("GET", "/api/events", None),
    ("GET", "/api/events/stream", None),
]
RUNNER_ENDPOINTS = [
    ("POST", "/api/runner/claim", {"runner_id": "r9"}),
    ("POST", "/api/runs/{main}/events", {"fencing_token": "$token", "events": [LOG]}),
    ("POST", "/api/runs/{main}/report", {"fencing_token": "$token", "outcome": "no_changes"}),
]
BAD_CREDENTIALS = {
    "missing": None,
    "unknown-key": "Bearer not-a-key",
    "bearer-without-key": "Bearer",
    "basic-scheme": "Basic a2E6a2E=",
    "no-scheme": ALICE,
    "runner-key-as-basic": f"Basic {RUNNER}",
}


def call(world: World, method: str, path: str, body: Any, authorization: str | None) -> Any:
    """(status, text, headers) of one request with exactly this Authorization header."""
    headers = {} if authorization is None else {"Authorization": authorization}
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = fill(body, world)
    with (
        httpx.Client(base_url=world.server.url, verify=False, timeout=15) as client,
        client.stream(method, path.format(main=world.main), **kwargs) as response,
    ):
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, "<an event stream>", response.headers
        return response.status_code, response.read().decode(), response.headers


@pytest.mark.parametrize(
    ("method", "path", "body"),
    USER_ENDPOINTS + RUNNER_ENDPOINTS,
    ids=[f"{m} {p}" for m, p, _ in USER_ENDPOINTS + RUNNER_ENDPOINTS],
)
def test_a_missing_or_unknown_key_is_401_with_www_authenticate(
    world: World, method: str, path: str, body: Any
) -> None:
    before = world.snapshot()
    for label, authorization in BAD_CREDENTIALS.items():
        status, text, headers = call(world, method, path, body, authorization)
        assert status == 401, f"{label}: {status} {text[:300]}"
        assert_error(status, text, headers, 401, "unauthorized")
        assert headers.get("www-authenticate", "").split()[0].lower() == "bearer", (label, headers)
    world.assert_unchanged(before)


@pytest.mark.parametrize(
    ("method", "path", "body", "wrong_keys"),
    [(*e, (RUNNER,)) for e in USER_ENDPOINTS] + [(*e, (ALICE, BOB)) for e in RUNNER_ENDPOINTS],
    ids=[f"{m} {p}" for m, p, _ in USER_ENDPOINTS + RUNNER_ENDPOINTS],
)
def test_the_wrong_role_is_403(
    world: World, method: str, path: str, body: Any, wrong_keys: tuple[str, ...]
) -> None:
    before = world.snapshot()
    for key in wrong_keys:
        status, text, headers = call(world, method, path, body, f"Bearer {key}")
        assert_error(status, text, headers, 403, "forbidden")
    world.assert_unchanged(before)


def test_health_and_server_info_are_public(world: World) -> None:
    kind = "sqlite" if world.server.database_url.startswith("sqlite") else "postgres"
    for authorization in (None, "Bearer not-a-key", f"Bearer {RUNNER}"):
        headers = {} if authorization is None else {"Authorization": authorization}
        with httpx.Client(base_url=world.server.url, headers=headers, verify=False) as client:
            health = client.get("/health")
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "ok"
            info = client.get("/api/server/info")
            assert info.status_code == 200, info.text
            assert info.json()["store"] == kind
            assert isinstance(info.json()["version"], str) and info.json()["version"]


def test_the_bearer_scheme_is_case_insensitive(world: World) -> None:
    with httpx.Client(base_url=world.server.url, verify=False) as client:
        for scheme in ("bearer", "BEARER"):
            answer = client.get("/api/runs", headers={"Authorization": f"{scheme} {ALICE}"})
            assert answer.status_code == 200, (scheme, answer.text)


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
