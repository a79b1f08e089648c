"""A stream's chain checked from its stored rows: each kind of damage is named with the
first sequence where it shows."""

from __future__ import annotations

from uuid import uuid4

import orjson
from eventsourcing.persistence import StoredEvent

from adapters.chain import Chain
from adapters.stored import StoredRow
from adapters.verify import HASH_MISMATCH, MISSING_SEQUENCE, PREV_HASH_MISMATCH, check_stream

TOPIC = "runledger:run.paused"


def stream(length: int = 4) -> list[StoredRow]:
    """A correctly chained stream of `length` events."""
    run_id = uuid4()
    events = [
        StoredEvent(
            run_id,
            v,
            TOPIC,
            orjson.dumps({"timestamp": "2026-12-02T12:00:00.000000Z", "actor": "a", "n": v}),
        )
        for v in range(1, length + 1)
    ]
    links = Chain(lambda *_: None).link(events)
    return [
        StoredRow(v, run_id, e.originator_version, e.topic, e.state, *link)
        for v, (e, link) in enumerate(zip(events, links, strict=True), start=1)
    ]


def test_an_intact_stream_is_valid_with_its_last_hash() -> None:
    rows = stream()
    check = check_stream(rows)
    assert (check.valid, check.events, check.head_hash) == (True, 4, rows[-1].hash)


def test_a_changed_byte_is_a_hash_mismatch_at_its_sequence() -> None:
    rows = stream()
    rows[2] = rows[2]._replace(state=rows[2].state.replace(b'"n":3', b'"n":8'))
    flaw = check_stream(rows).first_bad
    assert flaw is not None and (flaw.sequence, flaw.reason) == (3, HASH_MISMATCH)


def test_a_removed_event_is_a_missing_sequence() -> None:
    rows = stream()
    del rows[1]
    flaw = check_stream(rows).first_bad
    assert flaw is not None and (flaw.sequence, flaw.reason) == (2, MISSING_SEQUENCE)


def test_a_swapped_pair_does_not_link() -> None:
    rows = stream()
    rows[1], rows[2] = rows[2]._replace(sequence=2), rows[1]._replace(sequence=3)
    flaw = check_stream(rows).first_bad
    assert flaw is not None and (flaw.sequence, flaw.reason) == (2, PREV_HASH_MISMATCH)


def test_an_event_without_a_hash_is_a_hash_mismatch() -> None:
    rows = stream()
    rows[3] = rows[3]._replace(hash=None)
    flaw = check_stream(rows).first_bad
    assert flaw is not None and (flaw.sequence, flaw.reason) == (4, HASH_MISMATCH)
