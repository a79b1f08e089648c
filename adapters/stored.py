"""Stored events: the row the log holds (`StoredRow`), and the one way to read one: its
state at its class's current version.

Clients (envelopes, streams, event lists), the projections and the domain (the mapper, the
folder) all read stored events through `current_state`, so an event stored by an older
class version (`class_version` lower than the class's, `upcast_vN_vN+1` on the class) looks
the same everywhere: upcast, as the domain sees it. The stored form itself is the
transcoder's (adapters/store.py): plain JSON, the timestamp as RFC 3339 text.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from uuid import UUID

import orjson

from domain.projects import Project
from domain.runs import Run
from domain.timestamps import parse_timestamp


class StoredRow(NamedTuple):
    """One stored event as the log holds it: its global position, aggregate, sequence,
    topic and encoded state, and its place in its stream's hash chain (adapters/chain.py;
    None for an event stored before the chain, until the backfill hashes it). The engine
    hands these to its followers as it commits them."""

    position: int
    run_id: UUID
    sequence: int
    topic: str
    state: bytes
    prev_hash: bytes | None = None
    hash: bytes | None = None


EVENT_CLASSES: dict[str, type] = {
    cls.TOPIC: cls
    for aggregate in (Run, Project)
    for cls in vars(aggregate).values()
    if isinstance(cls, type) and issubclass(cls, aggregate.Event) and getattr(cls, "TOPIC", None)
}
# Only these classes have older stored versions: every other event (runner output above
# all, most of the log) pays one failed dict lookup and nothing else.
_VERSIONED: dict[str, type] = {
    topic: cls for topic, cls in EVENT_CLASSES.items() if getattr(cls, "class_version", 1) > 1
}


def current_state(topic: str, state: bytes) -> dict[str, Any]:
    """A stored event's state (`topic`, encoded `state`) as its class's current version:
    upcast, without `class_version`, JSON values only (the timestamp stays text)."""
    decoded: dict[str, Any] = orjson.loads(state)
    cls = _VERSIONED.get(topic)
    if cls is not None:
        upcast(cls, decoded)
    return decoded


def upcast(cls: type, state: dict[str, Any]) -> None:
    """Bring a decoded state from its stored version to `cls`'s, in place (the library's
    rule: `upcast_v1_v2`, then `upcast_v2_v3` …; a state stored without a version is v1)."""
    version = state.pop("class_version", 1)
    current = getattr(cls, "class_version", 1)
    while version < current:
        getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
        version += 1


def domain_event(cls: type, originator_id: UUID, version: int, state: dict[str, Any]) -> Any:
    """The domain event of a current state (from `current_state`, taken over), made the way
    the library's mapper makes one: by setting its __dict__, without the dataclass's init."""
    state["timestamp"] = parse_timestamp(state["timestamp"])
    state["originator_id"] = originator_id
    state["originator_version"] = version
    event: object = object.__new__(cls)
    object.__setattr__(event, "__dict__", state)
    return event
