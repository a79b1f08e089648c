"""Chaos for coordinator runs: a layered plan dispatched in waves, scripted runners that
outlive their servers, and the exactly-once count of a plan's children.

Shared by tests/e2e/test_coordination_crash.py (one server SIGKILLed and restarted) and
tests/e2e/test_coordination_processes.py (two processes, leadership moving).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from domain.plans import child_run_id
from tests.support import ALICE, RUNNER, Server

# Kills and restarts lose claim answers (a claim is not idempotent): such a child's lease
# expires and it is claimed again. These settings keep that short and never fatal.
CHAOS_ENV = {"RUNLEDGER_LEASE_SECONDS": "4", "RUNLEDGER_RETRY_BACKOFF": "0.2"}
MAX_ATTEMPTS = 10  # the coordinator's, so its children's: a lost claim costs one attempt


def layered_plan(layers: int = 5, width: int = 4) -> list[dict[str, Any]]:
    """`layers` x `width` subtasks: each of layer n depends on two of layer n-1 (its own
    column and the next), so every completion may make one or two subtasks ready and the
    plan is dispatched in many small waves."""
    subtasks = []
    for layer in range(layers):
        for col in range(width):
            deps = (
                [] if layer == 0 else [f"s{layer - 1}.{col}", f"s{layer - 1}.{(col + 1) % width}"]
            )
            subtasks.append(
                {"key": f"s{layer}.{col}", "title": f"layer {layer} col {col}", "depends_on": deps}
            )
    return subtasks


def start_coordinator(alice: httpx.Client, subtasks: list[dict[str, Any]]) -> str:
    """A pending run made a coordinator of `subtasks` (children approved by it); its id."""
    answer = alice.post("/api/runs", json={"task": "chaos plan", "max_attempts": MAX_ATTEMPTS})
    assert answer.status_code == 202, answer.text
    run_id = str(answer.json()["run_id"])
    body = {"subtasks": subtasks, "auto_approve_children": True}
    plan = alice.put(f"/api/runs/{run_id}/work-plan", json=body)
    assert plan.status_code == 201, plan.text
    return run_id


@dataclass
class Runners:
    """Scripted runners, one thread each: claim a child from the servers in turn, report it
    `no_changes` under an Idempotency-Key until a server answers, claim again. Connection
    errors and 503s (a server dead or starting) are waited out."""

    servers: Sequence[Server]
    threads: int = 2
    changes: bool = False  # every other child reports `changes` (the coordinator approves it)
    claimed: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # reports refused: their lease had gone
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Runners:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def wait_reported(self, n: int, timeout: float = 60) -> None:
        """Until `n` children were reported (failing at once on a runner's error)."""
        deadline = time.monotonic() + timeout
        while len(self.reported) < n:
            assert self.errors == []
            if time.monotonic() >= deadline:  # what the servers said last, to see why
                said = "".join(line for srv in self.servers for line in srv.output[-40:])
                raise AssertionError(f"{len(self.reported)} of {n} reports; servers:\n{said}")
            time.sleep(0.01)

    def _run(self, n: int) -> None:
        try:
            self._claim_and_report(n)
        except Exception as exc:  # said by the test, not lost in a thread
            self.errors.append(f"runner {n}: {exc!r}")

    def _claim_and_report(self, n: int) -> None:
        with ExitStack() as stack:
            clients = [stack.enter_context(s.client(RUNNER)) for s in self.servers]
            turn = n
            while not self._stop.is_set():
                turn += 1
                client = clients[turn % len(clients)]
                answer = self._post(
                    client, "/api/runner/claim", {"runner_id": f"chaos-{n}", "wait_seconds": 1}
                )
                if answer is None or answer.status_code == 204:
                    continue
                if answer.status_code != 200:
                    self.errors.append(f"claim: {answer.status_code} {answer.text[:200]}")
                    continue
                lease = answer.json()
                self.claimed.append(lease["run"]["run_id"])
                self._report(clients, turn, lease)

    def _report(self, clients: list[httpx.Client], turn: int, lease: dict[str, Any]) -> None:
        run_id, token = lease["run"]["run_id"], lease["fencing_token"]
        outcome = "changes" if self.changes and len(self.claimed) % 2 else "no_changes"
        body = {"fencing_token": token, "outcome": outcome}
        headers = {"Idempotency-Key": f"report-{run_id}-{token}"}
        while not self._stop.is_set():
            turn += 1
            client = clients[turn % len(clients)]
            answer = self._post(client, f"/api/runs/{run_id}/report", body, headers)
            if answer is None or answer.status_code == 503:
                continue
            if answer.status_code == 200:
                self.reported.append(run_id)
                return
            if answer.status_code == 409 and answer.json().get("status") == "in_progress":
                time.sleep(0.05)  # its first attempt died with a server: taken over soon
                continue
            if answer.status_code == 409:
                self.lost.append(run_id)  # the lease expired while the servers were down
                return
            self.errors.append(f"report {run_id}: {answer.status_code} {answer.text[:200]}")
            return

    def _post(
        self, client: httpx.Client, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response | None:
        try:
            answer = client.post(path, json=body, headers=headers)
        except httpx.HTTPError:
            time.sleep(0.05)
            return None
        if answer.status_code == 503:
            time.sleep(0.05)
        return answer


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def get_ok(client: httpx.Client, path: str, **params: Any) -> Any:
    """GET, waiting out a server that is starting (503, refused connections)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = client.get(path, params=params)
            if answer.status_code != 503:
                assert answer.status_code == 200, answer.text
                return answer.json()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"GET {path}: no answer"
        time.sleep(0.1)


def wait_for_assembly(server: Server, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The coordinator once it awaits its assembly review (fails if it ends otherwise)."""
    deadline = time.monotonic() + timeout
    with server.client(ALICE) as alice:
        while True:
            run = get_ok(alice, f"/api/runs/{run_id}")
            if run["status"] == "awaiting_review":
                return dict(run)
            assert run["status"] == "in_progress", run
            assert time.monotonic() < deadline, f"the plan is still moving: {run}"
            time.sleep(0.1)


def dispatched_once(
    server: Server, run_id: str, keys: list[str], reopened: Sequence[str] = ()
) -> dict[tuple[str, int], str]:
    """Check exactly-once dispatch: one `subtask.dispatched` per subtask and round (round 1
    for every key, round 2 for the `reopened` ones too), under the derived child id; each
    of those children exists once, and nothing else does. The child run id of each (key,
    round)."""
    wanted = sorted([(key, 1) for key in keys] + [(key, 2) for key in reopened])
    with server.client(ALICE) as alice:
        events = get_ok(alice, f"/api/runs/{run_id}/events", limit=1000)["events"]
        assert len(events) < 1000
        dispatched = [e["data"] for e in events if e["type"] == "subtask.dispatched"]
        per_round = Counter((d["key"], d["round"]) for d in dispatched)
        assert {k: n for k, n in per_round.items() if n != 1} == {}, "dispatched twice"
        assert sorted(per_round) == wanted
        coordinator = UUID(run_id)
        for d in dispatched:
            assert d["child_run_id"] == str(child_run_id(coordinator, d["key"], d["round"])), d
        expected = {(d["key"], d["round"]): d["child_run_id"] for d in dispatched}

        children = get_ok(alice, "/api/runs", parent_run_id=run_id, limit=500)["items"]
        assert sorted(c["run_id"] for c in children) == sorted(expected.values())
        per_key = Counter(c["subtask_key"] for c in children)
        assert per_key == Counter(key for key, _ in wanted), "a subtask has another child"
        assert {c["status"] for c in children} <= {"completed", "merged"}
        everything = get_ok(alice, "/api/runs", limit=500)["items"]
        assert sorted(r["run_id"] for r in everything) == sorted([run_id, *expected.values()])
        for (key, _), child in expected.items():
            doc = get_ok(alice, f"/api/runs/{child}")
            assert (doc["parent_run_id"], doc["subtask_key"]) == (run_id, key)

        plan = get_ok(alice, f"/api/runs/{run_id}/work-plan")
        assert plan["status"] == "awaiting_assembly"
        assert {(s["key"], s["status"], s["attempts"]) for s in plan["subtasks"]} == {
            (key, "completed", 1 + (key in reopened)) for key in keys
        }
    return expected
