"""The event envelope clients see, built straight from stored rows and encoded once.

Its data comes from adapters.stored.current_state, the one reading of a stored event:
clients see every event at its class's current version, as the domain does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson

from adapters.db import StoredRow
from adapters.stored import current_state
from domain.runs import Run
from domain.topics import FIRST_TOPICS, PROJECT_TOPICS, TERMINAL_TYPES, TYPES_BY_TOPIC

_BASE_KEYS = frozenset({"timestamp", "actor", "originator_topic", "class_version"})
OUTPUT_TOPIC = Run.OutputRecorded.TOPIC


@dataclass(slots=True)
class Envelope:
    """One event as the API shows it, plus the owner and project used for filtering.

    Project-level events have a project_id and no run_id or sequence.
    """

    position: int
    run_id: str | None
    sequence: int | None
    type: str
    at: str
    actor: str
    data: dict[str, Any]
    owner: str | None = None
    project_id: str | None = None
    prev_hash: str | None = None
    hash: str | None = None
    _json: bytes | None = field(default=None, repr=False)
    # The last SSE frame made of it, (named?, id, frame): a live event goes out to every
    # stream that follows it with the same id, so it is framed once for all of them.
    _frame: tuple[bool, int, bytes] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: StoredRow) -> Envelope:
        """Decode a stored row (upcast) without building the domain event."""
        state = current_state(row.topic, row.state)
        if row.topic == OUTPUT_TOPIC:
            kind, data = state["kind"], state["data"]
        else:
            kind = TYPES_BY_TOPIC.get(row.topic, row.topic)
            data = {k: v for k, v in state.items() if k not in _BASE_KEYS}
        is_project = row.topic in PROJECT_TOPICS
        env = cls(
            position=row.position,
            run_id=None if is_project else str(row.run_id),
            sequence=None if is_project else row.sequence,
            type=kind,
            at=state["timestamp"],
            actor=state["actor"],
            data=data,
            project_id=str(row.run_id) if is_project else None,
            prev_hash=None if row.prev_hash is None else row.prev_hash.hex(),
            hash=None if row.hash is None else row.hash.hex(),
        )
        if row.topic in FIRST_TOPICS:
            env.owner = state["owner"]
            env.project_id = env.project_id or state.get("project_id")
        return env

    @property
    def aggregate_id(self) -> str:
        """The run's id, or the project's for a project event."""
        return self.run_id or self.project_id or ""

    @property
    def is_terminal(self) -> bool:
        """True for the event that ends a run."""
        return self.type in TERMINAL_TYPES

    def as_dict(self) -> dict[str, Any]:
        """The wire shape."""
        if self.run_id is None:
            return {
                "project_id": self.project_id,
                "position": self.position,
                "type": self.type,
                "at": self.at,
                "actor": self.actor,
                "data": self.data,
                "prev_hash": self.prev_hash,
                "hash": self.hash,
            }
        return {
            "run_id": self.run_id,
            "sequence": self.sequence,
            "position": self.position,
            "type": self.type,
            "at": self.at,
            "actor": self.actor,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def json(self) -> bytes:
        """The wire shape as JSON, encoded once however many clients receive it."""
        if self._json is None:
            self._json = orjson.dumps(self.as_dict())
        return self._json

    def sse(self, event_id: int) -> bytes:
        """One SSE frame with the given id (the sequence or the position)."""
        made = self._frame
        if made is not None and made[0] and made[1] == event_id:
            return made[2]
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, self.type.encode(), self.json())
        self._frame = (True, event_id, frame)
        return frame

    def sse_unnamed(self, event_id: int) -> bytes:
        """The frame without an `event:` field (`?named=false`): every event reaches an
        `EventSource`'s `onmessage`; the type is in the data."""
        made = self._frame
        if made is not None and not made[0] and made[1] == event_id:
            return made[2]
        frame = b"id: %d\ndata: %s\n\n" % (event_id, self.json())
        self._frame = (False, event_id, frame)
        return frame


DONE_FRAME = b"event: done\ndata: {}\n\n"
DONE_FRAME_UNNAMED = b'data: {"type":"done"}\n\n'


def wire_type(row: StoredRow) -> str:
    """A stored event's wire type (only runner output needs its state read)."""
    if row.topic == OUTPUT_TOPIC:
        return current_state(row.topic, row.state)["kind"]
    return TYPES_BY_TOPIC.get(row.topic, row.topic)


class RunDirectory:
    """Who owns each run or project (and a run's project), learned once from its first event."""

    def __init__(self, db: Any, capacity: int = 100_000) -> None:
        self._db = db
        self._capacity = capacity
        self._known: dict[str, tuple[str, str | None]] = {}

    def stamp(self, env: Envelope) -> Envelope:
        """Fill in the envelope's owner and project (a cache hit, or one indexed read)."""
        key = env.aggregate_id
        if env.owner is not None:
            self._remember(key, env.owner, env.project_id)
            return env
        known = self._known.get(key)
        if known is None:
            rows = self._db.run_events(UUID(key), 0, 1)
            if not rows:
                return env
            first = Envelope.from_row(rows[0])
            known = (first.owner or "", first.project_id)
            self._remember(key, *known)
        env.owner, env.project_id = known
        return env

    def _remember(self, run_id: str, owner: str, project_id: str | None) -> None:
        if len(self._known) >= self._capacity:
            self._known.pop(next(iter(self._known)))
        self._known[run_id] = (owner, project_id)
