"""The SQLite event recorder: the library's, plus the idempotency receipt in the same
transaction as the events (see domain/receipts.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from adapters.idempotency import RECORD_RESULT
from domain.receipts import Receipt, ReceiptTakenOver


class ReceiptSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """SQLiteApplicationRecorder whose inserts also record an idempotent request's result."""

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        *,
        receipt: Receipt | None = None,
        result: str | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        if receipt is not None:
            c.execute(RECORD_RESULT, (result, receipt.owner, receipt.key, receipt.attempt))
            if c.sqlite_cursor.rowcount != 1:
                raise ReceiptTakenOver(f"Idempotency-Key {receipt.key!r} was taken over.")
        return super()._insert_events(c, stored_events, **kwargs)
