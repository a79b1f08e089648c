"""Checking a stream's hash chain against its stored events (docs/audit.md): the one
check behind `GET /api/runs/{id}/audit`, `runledger verify` and `runledger import`.

The reasons a stream's check fails, named with the first sequence (or, for a project, the
version) where it does: `missing_sequence` (an event is not there: removed, or never
written), `prev_hash_mismatch` (an event does not link to the one before it: something was
inserted, removed or reordered), `hash_mismatch` (an event is not what its hash says: it
was changed, or stored without a hash).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapters.chain import ZERO, event_hash
from adapters.stored import StoredRow

MISSING_SEQUENCE = "missing_sequence"
PREV_HASH_MISMATCH = "prev_hash_mismatch"
HASH_MISMATCH = "hash_mismatch"


@dataclass(frozen=True)
class Flaw:
    """Where a stream's chain breaks first, and why."""

    sequence: int
    reason: str


@dataclass(frozen=True)
class StreamCheck:
    """A stream's chain checked: how many events, the last one's hash, the first flaw."""

    events: int
    head_hash: bytes | None
    first_bad: Flaw | None

    @property
    def valid(self) -> bool:
        """True when every event is there, links to the one before and is what it says."""
        return self.first_bad is None


def check_stream(rows: Iterable[StoredRow]) -> StreamCheck:
    """Recompute one stream's chain from its stored events (in sequence order)."""
    prev, events, head = ZERO, 0, None
    for expected, row in enumerate(rows, start=1):
        events += 1
        if row.sequence != expected:
            return StreamCheck(events, head, Flaw(expected, MISSING_SEQUENCE))
        if row.prev_hash != prev:
            return StreamCheck(events, head, Flaw(row.sequence, PREV_HASH_MISMATCH))
        digest = event_hash(row.run_id, row.sequence, row.topic, row.state, prev)
        if row.hash != digest:
            return StreamCheck(events, head, Flaw(row.sequence, HASH_MISMATCH))
        prev = head = digest
    return StreamCheck(events, head, None)
