"""The canonical form and the chain's links: orjson's fast path is RFC 8785 wherever it is
taken, and a stream's events link to each other in order."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import uuid4

import orjson
import pytest
import rfc8785
from eventsourcing.persistence import StoredEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.chain import SAFE_INTEGER, ZERO, Chain, canonical, event_hash, recorded_envelope
from adapters.store import LeanMapper, OrjsonTranscoder
from tests.unit.test_stored_form import every_kind_of_event

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-SAFE_INTEGER, SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_the_canonical_form_is_rfc_8785s(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


def test_an_integer_beyond_the_safe_range_keeps_its_exact_digits() -> None:
    assert canonical({"n": 2**60 + 1}) == b'{"n":1152921504606846977}'


def stored(aggregate: Any, version: int, **state: Any) -> StoredEvent:
    base = {"timestamp": "2026-12-02T12:00:00.000000Z", "actor": "alice"}
    return StoredEvent(aggregate, version, "runledger:run.paused", orjson.dumps(base | state))


def test_a_run_events_hash_covers_its_envelope_as_recorded_and_its_prev_hash() -> None:
    run_id = uuid4()
    event = stored(run_id, 3, reason="lunch")

    envelope = recorded_envelope(run_id, 3, event.topic, event.state, b"\x01" * 32)

    assert envelope == {
        "run_id": str(run_id),
        "sequence": 3,
        "type": "run.paused",
        "at": "2026-12-02T12:00:00.000000Z",
        "actor": "alice",
        "data": {"reason": "lunch"},
        "prev_hash": "01" * 32,
    }
    digest = event_hash(run_id, 3, event.topic, event.state, b"\x01" * 32)
    assert digest == hashlib.sha256(rfc8785.dumps(envelope)).digest()


def test_a_streams_events_link_in_order_from_the_zero_hash() -> None:
    run_id = uuid4()
    chain = Chain(lambda *_: pytest.fail("a first event needs no lookup"))
    events = [stored(run_id, v, reason=str(v)) for v in (1, 2, 3)]

    links = chain.link(events)

    assert links[0][0] == ZERO
    assert [prev for prev, _ in links[1:]] == [digest for _, digest in links[:-1]]
    assert len({digest for _, digest in links}) == 3


def test_a_stream_continues_from_the_stored_or_remembered_hash() -> None:
    run_id, looked_up = uuid4(), []
    chain = Chain(lambda aggregate, version: looked_up.append(version) or b"\x07" * 32)

    first = chain.link([stored(run_id, 5)])
    assert first[0][0] == b"\x07" * 32 and looked_up == [4]
    chain.stored(run_id, 5, first[0][1])
    second = chain.link([stored(run_id, 6)])

    assert second[0][0] == first[0][1] and looked_up == [4]  # remembered, not read


def test_a_stream_whose_previous_event_is_not_hashed_cannot_be_linked() -> None:
    chain = Chain(lambda *_: None)
    with pytest.raises(LookupError):
        chain.link([stored(uuid4(), 2)])


def test_hashing_from_the_mappers_state_gives_the_hashes_of_the_stored_bytes() -> None:
    mapper = LeanMapper(transcoder=OrjsonTranscoder())
    by_stream: dict[Any, list[Any]] = {}
    for event in every_kind_of_event():
        by_stream.setdefault(event.originator_id, []).append(event)
    for events in by_stream.values():
        pairs = [mapper.to_stored_event_and_state(event) for event in events]
        stored = [pair[0] for pair in pairs]
        states = [pair[1] for pair in pairs]
        assert all(state is not None for state in states)
        chain = Chain(lambda _id, _version: ZERO)
        assert chain.link(stored, states) == chain.link(stored)


def test_a_state_that_is_not_plain_json_is_hashed_from_its_bytes() -> None:
    run_id = uuid4()
    state = {"timestamp": "2026-12-02T10:00:00.000000Z", "actor": "r", "kind": "log"}
    odd = {**state, "data": {"values": (1, 2.5)}}  # a tuple and a float: decoded otherwise
    stored = StoredEvent(run_id, 2, "runledger:run.output", orjson.dumps(odd))
    chain = Chain(lambda _id, _version: ZERO)

    assert chain.link([stored], [odd]) == chain.link([stored])
