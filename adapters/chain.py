"""Each stream's hash chain (docs/audit.md): every event's `hash` covers the event as it
was recorded and the hash of the event before it in its stream (`prev_hash`), so a change,
insertion, removal or reordering inside a stream breaks the chain.

`hash = SHA-256(canonical(envelope))`, the envelope being the event's wire envelope as
recorded (its class's version then, never upcast: a later version of an event type does
not change an old event's hash) without `hash` and `position`: `{run_id, sequence, type,
at, actor, data, prev_hash}` for a run's event, `{project_id, type, at, actor, data,
prev_hash}` for a project's. `canonical` is RFC 8785 (JCS). Hashes are computed once, when
the event is stored (Chain.link), and stored with it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from hashlib import sha256
from typing import Any
from uuid import UUID

import orjson
import rfc8785
from eventsourcing.persistence import StoredEvent

from domain.runs import Run
from domain.topics import PROJECT_TOPICS, TYPES_BY_TOPIC

ZERO = bytes(32)
"""The `prev_hash` of a stream's first event."""
SAFE_INTEGER = 2**53 - 1  # RFC 8785 numbers are IEEE 754 doubles: integers up to here
_BASE_KEYS = frozenset({"timestamp", "actor", "originator_topic", "class_version"})
_OUTPUT_TOPIC = Run.OutputRecorded.TOPIC


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON of a JSON value.

    Plain values (no floats, integers within ±(2^53 - 1), ASCII object keys) are encoded by
    orjson with sorted keys, whose output is then byte for byte RFC 8785's (a property
    test holds it to the `rfc8785` package); anything else is encoded by `rfc8785`.
    Integers beyond the safe range, which RFC 8785 cannot represent exactly, are refused
    on input (`400`); an event stored before that rule keeps their exact digits."""
    if _plain(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    try:
        return rfc8785.dumps(value)
    except rfc8785.IntegerDomainError:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _plain(value: Any) -> bool:
    # Explicit loops, with strings, integers and the other scalars (nearly every value)
    # checked inline rather than by a call each: this runs over every event's data on the
    # write path, where all() over generators, or a call per value, cost more than the
    # encoding and the hash together.
    kind = type(value)
    if kind is dict:
        for key in value:
            if not key.isascii():
                return False
        items = value.values()
    elif kind is list:
        items = value
    elif kind is int:
        return -SAFE_INTEGER <= value <= SAFE_INTEGER
    else:
        return kind is str or kind is bool or value is None
    for item in items:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -SAFE_INTEGER <= item <= SAFE_INTEGER:
                continue
            return False
        if (kind is dict or kind is list) and _plain(item):
            continue
        return False
    return True


def recorded_envelope(
    aggregate_id: UUID, sequence: int, topic: str, state: bytes, prev_hash: bytes
) -> dict[str, Any]:
    """The envelope a hash covers: the event as recorded, with its `prev_hash` (hex)."""
    return _envelope(_head(aggregate_id, topic), sequence, topic, state, prev_hash)


def event_hash(
    aggregate_id: UUID, sequence: int, topic: str, state: bytes, prev_hash: bytes
) -> bytes:
    """The hash of a stored event whose stream's previous event hashed to `prev_hash`."""
    envelope = recorded_envelope(aggregate_id, sequence, topic, state, prev_hash)
    return sha256(_canonical_envelope(envelope)).digest()


def _canonical_envelope(envelope: dict[str, Any]) -> bytes:
    """canonical(envelope), knowing which of its values can be other than plain: only its
    data (its keys and its other values are ASCII strings and a safe integer when they
    are strings at all). The write path's hashing, where checking the whole envelope cost
    a third of the hash."""
    if _plain_envelope(envelope):
        return orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS)
    return canonical(envelope)


def _plain_envelope(envelope: dict[str, Any]) -> bool:
    """True when every value of the envelope is plain JSON (its other values are a stream
    id, a sequence and a prev_hash made here)."""
    return (
        type(envelope["type"]) is str
        and type(envelope["at"]) is str
        and type(envelope["actor"]) is str
        and _plain(envelope["data"])
    )


def _head(aggregate_id: UUID, topic: str) -> tuple[str, str]:
    """The stream's key and id in its events' envelopes."""
    return ("project_id" if topic in PROJECT_TOPICS else "run_id", str(aggregate_id))


def _envelope(
    head: tuple[str, str], sequence: int, topic: str, state: bytes, prev_hash: bytes
) -> dict[str, Any]:
    return _envelope_of(head, sequence, topic, orjson.loads(state), prev_hash)


def _envelope_of(
    head: tuple[str, str], sequence: int, topic: str, decoded: dict[str, Any], prev_hash: bytes
) -> dict[str, Any]:
    if topic == _OUTPUT_TOPIC:
        kind, data = decoded["kind"], decoded["data"]
    else:
        kind = TYPES_BY_TOPIC.get(topic, topic)
        data = {k: v for k, v in decoded.items() if k not in _BASE_KEYS}
    key, stream = head
    envelope = {key: stream} if key == "project_id" else {key: stream, "sequence": sequence}
    envelope["type"] = kind
    envelope["at"] = decoded["timestamp"]
    envelope["actor"] = decoded["actor"]
    envelope["data"] = data
    envelope["prev_hash"] = prev_hash.hex()
    return envelope


class Chain:
    """Links events about to be stored to their streams' chains.

    The hash of each stream's last event is remembered (a bounded cache); on a miss it
    is read from the store by `stored_hash(aggregate_id, sequence)`. An event never
    changes once stored, so a remembered hash can only be missing, never wrong."""

    def __init__(
        self, stored_hash: Callable[[UUID, int], bytes | None], capacity: int = 100_000
    ) -> None:
        self._stored_hash = stored_hash
        self._capacity = capacity
        self._last: OrderedDict[UUID, tuple[int, bytes]] = OrderedDict()

    def link(
        self,
        events: Sequence[StoredEvent],
        states: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """(prev_hash, hash) of each of one stream's next events, in order. `states`, when
        given, are the events' states as the mapper encoded them (None where it cannot
        say): hashed from there rather than decoded from the stored bytes again, which
        gives the same envelope whenever the state is plain JSON (checked; otherwise the
        bytes are decoded)."""
        if not events:
            return []
        aggregate_id = UUID(str(events[0].originator_id))
        prev = self.prev_hash(aggregate_id, events[0].originator_version)
        head = _head(aggregate_id, events[0].topic)  # a stream's events are all one kind's
        key, stream = head
        run = key == "run_id"
        sort, dumps = orjson.OPT_SORT_KEYS, orjson.dumps
        links = []
        for i, event in enumerate(events):
            state = None if states is None else states[i]
            body = None
            if state is not None:
                # _envelope_of and _plain_envelope, inline: this loop is the write path's
                # hashing, once per event.
                topic = event.topic
                if topic == _OUTPUT_TOPIC:
                    kind, data = state["kind"], state["data"]
                else:
                    kind = TYPES_BY_TOPIC.get(topic, topic)
                    data = {k: v for k, v in state.items() if k not in _BASE_KEYS}
                at, actor = state["timestamp"], state["actor"]
                if type(kind) is str and type(at) is str and type(actor) is str and _plain(data):
                    envelope = (
                        {key: stream, "sequence": event.originator_version}
                        if run
                        else {key: stream}
                    )
                    envelope["type"] = kind
                    envelope["at"] = at
                    envelope["actor"] = actor
                    envelope["data"] = data
                    envelope["prev_hash"] = prev.hex()
                    body = dumps(envelope, option=sort)
            if body is None:
                envelope = _envelope(head, event.originator_version, event.topic, event.state, prev)
                body = _canonical_envelope(envelope)
            digest = sha256(body).digest()
            links.append((prev, digest))
            prev = digest
        return links

    def knows(self, aggregate_id: UUID, sequence: int) -> bool:
        """True when linking the stream's event `sequence` reads nothing from the store."""
        if sequence == 1:
            return True
        known = self._last.get(aggregate_id)
        return known is not None and known[0] == sequence - 1

    def prev_hash(self, aggregate_id: UUID, sequence: int) -> bytes:
        """The hash of the event before `sequence` in its stream (ZERO for the first)."""
        if sequence == 1:
            return ZERO
        known = self._last.get(aggregate_id)
        if known is not None and known[0] == sequence - 1:
            return known[1]
        stored = self._stored_hash(aggregate_id, sequence - 1)
        if stored is None:
            raise LookupError(f"{aggregate_id} has no hashed event {sequence - 1}")
        return stored

    def stored(self, aggregate_id: UUID, sequence: int, digest: bytes) -> None:
        """Remember a stream's last stored event's hash."""
        self._last[aggregate_id] = (sequence, digest)
        self._last.move_to_end(aggregate_id)
        if len(self._last) > self._capacity:
            self._last.popitem(last=False)

    def forget(self) -> None:
        """Forget every remembered hash (the store was changed behind this process)."""
        self._last.clear()
