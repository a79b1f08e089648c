"""The SQLite event recorder: the library's, plus each event's place in its stream's hash
chain (adapters/chain.py) and the idempotency receipt (see domain/receipts.py), both in the
same transaction as the events, and groups of appends in one transaction
(adapters/group_commit.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteCursor,
)

from adapters.group_commit import Append
from adapters.idempotency import RECORD_RESULT
from adapters.locks import sqlite_writing
from domain.receipts import Receipt, ReceiptTakenOver

HASH_COLUMNS = ("prev_hash", "hash")


class ReceiptSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """SQLiteApplicationRecorder whose inserts also store the events' chain hashes and
    record an idempotent request's result."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.insert_hashed_statement = (
            f"INSERT INTO {self.events_table_name} "
            "(originator_id, originator_version, topic, state, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )

    def create_table(self) -> None:
        """The library's table, with the chain's columns (added to a table made before)."""
        super().create_table()
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"PRAGMA table_info({self.events_table_name})")
            have = {row[1] for row in c.fetchall()}
            for column in HASH_COLUMNS:
                if column not in have:
                    c.execute(f"ALTER TABLE {self.events_table_name} ADD COLUMN {column} BLOB")

    def stored_hash(self, aggregate_id: UUID, version: int) -> bytes | None:
        """The stored hash of one event (None if it is not stored, or not hashed)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT hash FROM {self.events_table_name} "
                "WHERE originator_id = ? AND originator_version = ?",
                (aggregate_id.hex, version),
            )
            row = c.fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def append_group(self, group: Sequence[Append], writer: bool = False) -> None:
        """Store the appends (each one aggregate's next events, aggregates all different) in
        one transaction; set each one's positions, or its error: IntegrityError when its
        version is already stored, ReceiptTakenOver when its receipt was taken over. Each
        append is a savepoint of its own, so that a refused one leaves nothing behind and
        its neighbours go in. (`writer`: as the PostgreSQL recorder's; here nothing is kept.)"""
        try:
            self._append_group(group)
        except BaseException:
            for a in group:  # nothing of the transaction was stored
                a.positions = a.error = None
            raise

    def _append_group(self, group: Sequence[Append]) -> None:
        pool = self.datastore.pool
        with (
            sqlite_writing(pool.db_name, pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT),
            self.datastore.transaction(commit=True) as c,
        ):
            for a in group:
                c.execute("SAVEPOINT append")
                try:
                    a.positions = self._insert_hashed(c, a)
                except sqlite3.IntegrityError as error:
                    c.execute("ROLLBACK TO append")
                    a.error = IntegrityError(error)
                except ReceiptTakenOver as error:
                    c.execute("ROLLBACK TO append")
                    a.error = error
                c.execute("RELEASE append")

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        *,
        receipt: Receipt | None = None,
        result: str | None = None,
        hashes: Sequence[tuple[bytes, bytes]] | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        first = stored_events[0].originator_id
        aggregate = first if isinstance(first, UUID) else UUID(str(first))
        return self._insert_hashed(c, Append(aggregate, stored_events, hashes, receipt, result))

    def _insert_hashed(self, c: SQLiteCursor, append: Append) -> list[int]:
        """One append's events (and its receipt's result) in the transaction of `c`; their
        positions."""
        stored_events, receipt, hashes = append.events, append.receipt, append.hashes
        if receipt is not None:
            c.execute(RECORD_RESULT, (append.result, receipt.owner, receipt.key, receipt.attempt))
            if c.sqlite_cursor.rowcount != 1:
                raise ReceiptTakenOver(f"Idempotency-Key {receipt.key!r} was taken over.")
        links = hashes if hashes is not None else [(None, None)] * len(stored_events)
        positions: list[int] = []
        for event, (prev_hash, digest) in zip(stored_events, links, strict=True):
            c.execute(
                self.insert_hashed_statement,
                (
                    event.originator_id.hex
                    if isinstance(event.originator_id, UUID)
                    else event.originator_id,
                    event.originator_version,
                    event.topic,
                    event.state,
                    prev_hash,
                    digest,
                ),
            )
            positions.append(int(c.sqlite_cursor.lastrowid or 0))
        return positions
