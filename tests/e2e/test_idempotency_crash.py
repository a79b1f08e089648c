"""Idempotency across crashes, over real processes: a batch whose server was SIGKILLed in
the middle of its request is stored once, and its retry gets the first answer at once.

The fault is the one an adversarial run used: a second connection holds the lock on the
key's row (on SQLite: the database's write lock) while the request runs, and the server is
killed then. Whether the server was stuck before its events committed or after (waiting to
record the answer), the outcome must be the same: one copy, and the same answer on retry.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.store import StoreSettings
from tests.chaos import kill_loop
from tests.e2e.helpers import claim, run_history, submit
from tests.support import ALICE, RUNNER, Server

BATCH = 300


@contextmanager
def row_lock(server: Server, owner: str, key: str) -> Iterator[None]:
    """Hold the lock on the key's idempotency row (SQLite: the write lock) once it exists.
    Released before the server restarts: a starting server takes the write lock too."""
    settings = StoreSettings.from_url(server.database_url)
    deadline = time.monotonic() + 10
    if settings.kind == "postgres":
        import psycopg

        conn = psycopg.connect(settings.pg_conninfo, options=f"-c search_path={settings.pg_schema}")
        try:
            while time.monotonic() < deadline:
                # Waits while the request's save holds the row: then ours comes after its
                # commit, and the request is stuck recording its answer instead.
                if conn.execute(
                    "SELECT 1 FROM idempotency_keys WHERE owner = %s AND key = %s FOR UPDATE",
                    (owner, key),
                ).fetchone():
                    break
                conn.rollback()
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    assert settings.sqlite_path is not None
    conn = sqlite3.connect(settings.sqlite_path, timeout=30, isolation_level=None)
    try:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT 1 FROM idempotency_keys WHERE owner = ? AND key = ?", (owner, key)
            ).fetchone()
            if row:
                conn.execute("BEGIN IMMEDIATE")
                break
        yield
    finally:
        if conn.in_transaction:
            conn.rollback()
        conn.close()


def post_in_background(server: Server, path: str, body: Any, key: str) -> list[Any]:
    """POST from a thread; the list gets the answer or the error once there is one."""
    outcome: list[Any] = []

    def post() -> None:
        try:
            with server.client(RUNNER) as runner:
                outcome.append(runner.post(path, json=body, headers={"Idempotency-Key": key}))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    threading.Thread(target=post, daemon=True).start()
    return outcome


def test_a_batch_whose_server_died_mid_request_is_stored_once_and_answered_on_retry(
    server: Server,
) -> None:
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = submit(alice, "crash mid-request")["run_id"]
        token = claim(runner)["fencing_token"]
    path = f"/api/runs/{run_id}/events"
    for attempt in range(5):  # until the lock is taken while the request is still running
        key = f"batch-{attempt}"
        events = [{"type": "log", "data": {"key": key, "i": i}} for i in range(BATCH)]
        body = {"fencing_token": token, "events": events}
        outcome = post_in_background(server, path, body, key)
        with row_lock(server, "runner-1", key):
            time.sleep(0.5)
            if outcome:
                continue  # it finished first: no fault injected, try again
            server.kill()
            break
    else:
        pytest.fail("the request finished before the lock could be taken, five times")
    server.start()
    restarted = time.monotonic()
    with server.client(RUNNER) as runner:
        retry = runner.post(path, json=body, headers={"Idempotency-Key": key})
        answered_in = time.monotonic() - restarted
        again = runner.post(path, json=body, headers={"Idempotency-Key": key})

    assert retry.status_code == 200, retry.text
    assert answered_in < 5
    assert (again.status_code, again.json()) == (200, retry.json())
    with server.client(ALICE) as alice:
        history = run_history(alice, run_id)
    logs = [e for e in history if e["type"] == "log" and e["data"]["key"] == key]
    assert [e["data"]["i"] for e in logs] == list(range(BATCH))  # once, in order
    assert retry.json() == {"sequence": logs[-1]["sequence"], "position": logs[-1]["position"]}


def test_a_randomised_kill_loop_of_idempotent_batches_stores_each_once(
    store_url: str, tmp_path: Path
) -> None:
    server = Server(store_url, tmp_path / "data", RUNLEDGER_LEASE_SECONDS="3600").start()
    try:
        found = kill_loop(server, ALICE, RUNNER, batches=500, kills=10, seed=7)
    finally:
        server.kill()
    assert found.errors == []
    assert (found.kills, found.answered) == (10, 500)
    assert (found.duplicates, found.missing, found.wrong_answers) == (0, 0, 0)
