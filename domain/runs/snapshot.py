"""A run's snapshot: the eventsourcing library's Snapshot, with the run's attributes kept as
plain JSON, so that the store's JSON transcoder (which gives back only an event's own
timestamp as a datetime) keeps every value's type.

`take` stores the attributes with each datetime as ISO 8601 text and each tuple as a list,
and records where those were (their paths from the attributes: keys and list indexes), so
that no value a runner sent (a gate's request, a directive) can be mistaken for one of
them. `mutate` puts them back, then rebuilds the run as the library does, upcasting the
attributes through the run class's `upcast_v<N>_v<N+1>` methods when the class's
`class_version` moved on since the snapshot was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from eventsourcing.domain import Snapshot

Path = list[str | int]


@dataclass(frozen=True)
class RunSnapshot(Snapshot):
    """A run's state at a version: `state` is {"attributes", "datetimes", "tuples"}."""

    @classmethod
    def take(cls, aggregate: Any) -> RunSnapshot:
        """A snapshot of the run as it is (TypeError if an attribute is not JSON-able)."""
        taken = Snapshot.take(aggregate)
        datetimes: list[Path] = []
        tuples: list[Path] = []
        attributes = _plain(taken.state, [], datetimes, tuples)
        state = {"attributes": attributes, "datetimes": datetimes, "tuples": tuples}
        return cls(
            originator_id=taken.originator_id,
            originator_version=taken.originator_version,
            timestamp=taken.timestamp,
            topic=taken.topic,
            state=state,
        )

    def mutate(self, _: None) -> Any:
        """The run as it was at this snapshot's version (upcast to its class's version)."""
        attributes = self.state["attributes"]
        for path in self.state["datetimes"]:
            _replace(attributes, path, datetime.fromisoformat)
        for path in reversed(self.state["tuples"]):  # inner ones first: a tuple is not changed
            _replace(attributes, path, tuple)
        return Snapshot.mutate(replace(self, state=attributes), None)


def _plain(value: Any, path: Path, datetimes: list[Path], tuples: list[Path]) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is datetime:
        datetimes.append(list(path))
        return value.isoformat()
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"a snapshot keeps text keys only, not {key!r} at {path}")
            out[key] = _plain(item, [*path, key], datetimes, tuples)
        return out
    if kind is list or kind is tuple:
        if kind is tuple:
            tuples.append(list(path))
        return [_plain(item, [*path, i], datetimes, tuples) for i, item in enumerate(value)]
    raise TypeError(f"a snapshot cannot keep a {kind.__name__} (at {path})")


def _replace(attributes: dict[str, Any], path: Path, convert: Any) -> None:
    """Convert the value at `path` in place (its parents are still dicts and lists)."""
    parent: Any = attributes
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = convert(parent[path[-1]])
