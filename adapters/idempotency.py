"""Idempotency records: one row per (owner, Idempotency-Key), for 24 hours.

A row goes through three states:
- reserved: a request holds it (`holder` = the process's instance token, `attempt` = this
  try), nothing committed yet;
- committed: the request's saves recorded `result` (what they appended) in their own
  transactions (see domain/receipts.py and the recorders), but the answer is not stored;
- answered: `status` and `body` hold the answer every repeat gets.

A reservation whose holder is gone (its instance lock is free: certain, at once) or that is
older than any request may take is taken over by a retry: a committed one is answered from
its `result`, a bare one runs again under a new attempt. A taken-over attempt that is still
running cannot store anything more: its saves check their attempt in their transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.db import Cursor, Database

TTL = 24 * 3600
RESERVATION_TIMEOUT = 60.0  # longer than any request may take
COLUMNS = {"holder": "BIGINT", "attempt": "TEXT", "result": "TEXT"}
TABLE = """CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    status INTEGER,
    body TEXT,
    holder BIGINT,
    attempt TEXT,
    result TEXT,
    PRIMARY KEY (owner, key)
)"""
# Run by the recorders inside the transaction that stores a request's events.
RECORD_RESULT = "UPDATE idempotency_keys SET result = ? WHERE owner = ? AND key = ? AND attempt = ?"


def create_table(cur: Cursor, postgres: bool) -> None:
    """Create the table, or add the columns an older layout lacks."""
    cur.execute(TABLE)
    if postgres:
        rows = cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'idempotency_keys'"
        ).fetchall()
    else:
        rows = [r[1:] for r in cur.execute("PRAGMA table_info(idempotency_keys)").fetchall()]
    have = {row[0] for row in rows}
    for name, kind in COLUMNS.items():  # ALTER only when needed: it locks the whole table
        if name not in have:
            cur.execute(f"ALTER TABLE idempotency_keys ADD COLUMN {name} {kind}")


@dataclass(frozen=True)
class Found:
    """What a request found under its key; exactly one of the fields says what to do."""

    attempt: str | None = None  # run the request under this attempt
    answer: tuple[int, bytes] | None = None  # replay this answer
    result: dict[str, Any] | None = None  # answer from what a dead attempt committed
    taken_from: str | None = None  # ... that attempt, to record the answer under
    in_progress: bool = False  # a live request holds the key: try again later
    mismatch: bool = False  # the key was used for a different request


class Idempotency:
    """Reserves keys for requests, records their answers, and takes over dead reservations."""

    def __init__(self, db: Database, holder: int, alive: Callable[[int], bool]) -> None:
        self.db = db
        self.holder = holder  # this process's instance token
        self.alive = alive  # is the process with this token running?
        self.running: set[str] = set()  # attempts in progress in this process

    def reserve(self, owner: str, key: str, fingerprint: str) -> Found:
        """Reserve the key, or say what the earlier request with it left."""
        now = time.time()
        attempt = uuid.uuid4().hex
        with self.db.transaction() as cur:
            cur.execute(
                "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? AND created_at < ?",
                (owner, key, now - TTL),
            )
            cur.execute(
                "INSERT INTO idempotency_keys (owner, key, fingerprint, created_at, holder, "
                "attempt) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (owner, key) DO NOTHING",
                (owner, key, fingerprint, now, self.holder, attempt),
            )
            if cur.rowcount == 1:
                self.running.add(attempt)
                return Found(attempt=attempt)
            found = self._earlier(cur, owner, key, fingerprint, now)
            if found is not None:
                return found
            cur.execute(  # a bare reservation of a dead request: run it again
                "UPDATE idempotency_keys SET holder = ?, attempt = ?, created_at = ? "
                "WHERE owner = ? AND key = ?",
                (self.holder, attempt, now, owner, key),
            )
            self.running.add(attempt)
            return Found(attempt=attempt)

    def _earlier(
        self, cur: Cursor, owner: str, key: str, fingerprint: str, now: float
    ) -> Found | None:
        """What the row says, or None when it is a dead request's bare reservation."""
        lock = " FOR UPDATE" if self.db.postgres else ""
        row = cur.execute(
            "SELECT fingerprint, status, body, holder, attempt, result, created_at "
            f"FROM idempotency_keys WHERE owner = ? AND key = ?{lock}",
            (owner, key),
        ).fetchone()
        assert row is not None  # the insert found it, and nothing deletes it meanwhile
        theirs, status, body, holder, attempt, result, created_at = row
        if theirs != fingerprint:
            return Found(mismatch=True)
        if status is not None:
            return Found(answer=(int(status), body.encode()))
        if now - float(created_at) < RESERVATION_TIMEOUT and self._running(holder, attempt):
            return Found(in_progress=True)
        if result is not None:
            return Found(result=orjson.loads(result), taken_from=attempt)
        return None

    def _running(self, holder: int | None, attempt: str | None) -> bool:
        if holder is None:  # a row from before holders were recorded: trust the clock
            return True
        if int(holder) == self.holder:
            return attempt in self.running
        return self.alive(int(holder))

    def record(self, owner: str, key: str, attempt: str, status: int, body: bytes) -> None:
        """Store the answer of an attempt (not if another attempt took the key over)."""
        self.running.discard(attempt)
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE idempotency_keys SET status = ?, body = ? "
                "WHERE owner = ? AND key = ? AND attempt = ? AND status IS NULL",
                (status, body.decode(), owner, key, attempt),
            )

    def release(self, owner: str, key: str, attempt: str) -> bool:
        """Forget a reservation whose request failed; False if it had committed something
        (then the failure is its answer, to record)."""
        self.running.discard(attempt)
        with self.db.transaction() as cur:
            cur.execute(
                "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? AND attempt = ? "
                "AND result IS NULL",
                (owner, key, attempt),
            )
            return cur.rowcount == 1 or not self._committed(cur, owner, key, attempt)

    @staticmethod
    def _committed(cur: Cursor, owner: str, key: str, attempt: str) -> bool:
        row = cur.execute(
            "SELECT result FROM idempotency_keys WHERE owner = ? AND key = ? AND attempt = ?",
            (owner, key, attempt),
        ).fetchone()
        return row is not None and row[0] is not None
