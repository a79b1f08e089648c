"""A randomised kill loop of idempotent batches: a runner posts batches with Idempotency-Keys
and retries each until it is answered, while the server is SIGKILLed and restarted at
random. Shared by tests/e2e/test_idempotency_crash.py and scripts/chaos_idempotency.py (so
it imports nothing of pytest's)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.serve import ServeProcess

BATCH = 5


@dataclass
class KillLoop:
    """What one loop did and found."""

    kills: int = 0
    answered: int = 0
    retries: int = 0
    duplicates: int = 0  # batches stored more than once
    missing: int = 0  # answered batches not stored
    wrong_answers: int = 0  # answers whose sequence is not the batch's last event
    errors: list[str] = field(default_factory=list)


def _client(server: ServeProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def start_run(server: ServeProcess, user_key: str, runner_key: str) -> tuple[str, int]:
    """A run claimed by the runner: its id and fencing token."""
    with _client(server, user_key) as user, _client(server, runner_key) as runner:
        run_id = user.post("/api/runs", json={"task": "kill loop"}).json()["run_id"]
        lease = runner.post("/api/runner/claim", json={"runner_id": "chaos", "wait_seconds": 10})
        assert lease.status_code == 200, lease.text
        assert lease.json()["run"]["run_id"] == run_id
        return run_id, int(lease.json()["fencing_token"])


def post_until_answered(
    server: ServeProcess,
    runner_key: str,
    run_id: str,
    body: dict[str, Any],
    key: str,
    out: KillLoop,
) -> dict[str, Any] | None:
    """POST one batch with its key until the server answers it (None on a real refusal)."""
    while True:
        try:
            with _client(server, runner_key) as runner:
                answer = runner.post(
                    f"/api/runs/{run_id}/events", json=body, headers={"Idempotency-Key": key}
                )
        except httpx.HTTPError:
            answer = None
        if answer is not None and answer.status_code == 200:
            return answer.json()
        if answer is not None and not _worth_retrying(answer):
            out.errors.append(f"{key}: {answer.status_code} {answer.text[:200]}")
            return None
        out.retries += 1
        time.sleep(0.02)


def _worth_retrying(answer: httpx.Response) -> bool:
    """The database is unavailable, or the first attempt is still in progress."""
    if answer.status_code == 503:
        return True
    return answer.status_code == 409 and answer.json().get("status") == "in_progress"


def kill_loop(
    server: ServeProcess, user_key: str, runner_key: str, *, batches: int, kills: int, seed: int
) -> KillLoop:
    """Post `batches` batches while killing the server `kills` times; then count copies.
    The server's lease must outlast the loop (RUNLEDGER_LEASE_SECONDS): nobody heartbeats."""
    out = KillLoop()
    rng = random.Random(seed)
    run_id, token = start_run(server, user_key, runner_key)
    answers: dict[int, dict[str, Any]] = {}

    def write() -> None:
        for i in range(batches):
            events = [{"type": "log", "data": {"batch": i, "n": n}} for n in range(BATCH)]
            body = {"fencing_token": token, "events": events}
            answer = post_until_answered(server, runner_key, run_id, body, f"b-{seed}-{i}", out)
            if answer is None:
                return
            answers[i] = answer

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    while out.kills < kills and writer.is_alive():
        # Spread the kills over the batches, each at a random moment of a request.
        due = (out.kills + 1) * batches // (kills + 1)
        while len(answers) < due and writer.is_alive():
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        server.kill()
        out.kills += 1
        server.launch(60)
    writer.join(600)
    out.answered = len(answers)
    _count(server, user_key, run_id, answers, out)
    return out


def _count(
    server: ServeProcess, user_key: str, run_id: str, answers: dict[int, Any], out: KillLoop
) -> None:
    """Count each batch's copies in the run's history, and check each answer against it."""
    last_of: dict[int, list[int]] = {}
    with _client(server, user_key) as user:
        after = 0
        while True:
            page = user.get(f"/api/runs/{run_id}/events", params={"after": after, "limit": 1000})
            events = page.json()["events"]
            for event in events:
                if event["type"] == "log" and event["data"].get("n") == BATCH - 1:
                    last_of.setdefault(event["data"]["batch"], []).append(event["sequence"])
            if len(events) < 1000:
                break
            after = events[-1]["sequence"]
    out.duplicates = sum(1 for copies in last_of.values() if len(copies) > 1)
    out.missing = sum(1 for i in answers if i not in last_of)
    out.wrong_answers = sum(
        1 for i, answer in answers.items() if last_of.get(i, [None])[0] != answer["sequence"]
    )
