"""Receipts: how a save knows the idempotent request it belongs to.

A request sent with an `Idempotency-Key` runs under a receipt. Every save the request makes
records, in the same transaction as its events, what it appended (the aggregate, its status
and sequence) under the request's key and attempt. So a retry after a crash finds exactly
what the first attempt committed, and a save whose reservation was taken over by a retry
(its process was believed dead) is refused with its events, never stored twice.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Receipt:
    """An idempotent request in progress: whose key, and which attempt at it."""

    owner: str
    key: str
    attempt: str


class ReceiptTakenOver(Exception):
    """The request's reservation now belongs to another attempt: this one must not store."""


# The receipt of the request this thread of work is serving (contexts follow a request
# into the thread pool), or None outside idempotent requests.
CURRENT_RECEIPT: ContextVar[Receipt | None] = ContextVar("runledger_receipt", default=None)
