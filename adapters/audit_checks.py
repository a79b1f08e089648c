"""The checks that `runledger verify` and `runledger import` run while reading a history
once, in commit order: each stream's chain (`Chains`, the same rules as
adapters/verify.check_stream), the Merkle tree's root at any size (`Frontier`), and the
failures found, each naming where (`Failure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from adapters import merkle
from adapters.chain import ZERO, event_hash
from adapters.stored import StoredRow
from adapters.verify import HASH_MISMATCH, MISSING_SEQUENCE, PREV_HASH_MISMATCH, Flaw
from domain.topics import PROJECT_TOPICS


@dataclass(frozen=True)
class Failure:
    """One thing that does not check, and where: `run <id> sequence <n>`, `project <id>
    version <n>`, `checkpoint <size>`, `line <n>`, or the history as a whole."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


def stream_kind(topic: str) -> str:
    """`project` for a project's event, `run` for a run's."""
    return "project" if topic in PROJECT_TOPICS else "run"


def event_place(kind: str, stream: UUID | str, sequence: int) -> str:
    """How a failure names one event: `run <id> sequence <n>` or `project <id> version <n>`."""
    return f"{kind} {stream} {'version' if kind == 'project' else 'sequence'} {sequence}"


class Chains:
    """Every stream's chain, followed one event at a time in commit order (in which a
    stream's events come in sequence order). The first flaw of a stream is reported once;
    the rest of a broken stream is not checked (as check_stream stops at it)."""

    def __init__(self) -> None:
        self._next: dict[UUID, tuple[int, bytes]] = {}
        self._broken: set[UUID] = set()
        self.kinds: dict[UUID, str] = {}

    def follow(self, row: StoredRow, digest: bytes | None = None) -> Flaw | None:
        """Check one event against its stream's chain so far; its first flaw, if any.
        `digest`, when given, is the event's hash already computed from its content."""
        stream = row.run_id
        self.kinds.setdefault(stream, stream_kind(row.topic))
        if stream in self._broken:
            return None
        expected, prev = self._next.get(stream, (1, ZERO))
        flaw = None
        if row.sequence != expected:
            flaw = Flaw(expected, MISSING_SEQUENCE)
        elif row.prev_hash != prev:
            flaw = Flaw(row.sequence, PREV_HASH_MISMATCH)
        else:
            if digest is None:
                digest = event_hash(stream, row.sequence, row.topic, row.state, prev)
            if row.hash != digest:
                flaw = Flaw(row.sequence, HASH_MISMATCH)
        if flaw is not None:
            self._broken.add(stream)
            return flaw
        assert digest is not None
        self._next[stream] = (row.sequence + 1, digest)
        return None


class Frontier:
    """The Merkle tree (RFC 9162) grown one leaf at a time, keeping only the perfect
    subtrees on its right edge: its root at the current size costs O(log n)."""

    def __init__(self) -> None:
        self.size = 0
        self._parts: list[tuple[int, bytes]] = []  # (level, hash), biggest first

    def add(self, entry: bytes) -> None:
        """Append a leaf (an event's 32 hash bytes)."""
        level, digest = 0, merkle.leaf_hash(entry)
        while self._parts and self._parts[-1][0] == level:
            _, left = self._parts.pop()
            level, digest = level + 1, merkle.node_hash(left, digest)
        self._parts.append((level, digest))
        self.size += 1

    def root(self) -> bytes:
        """The root of the tree as it stands."""
        if not self._parts:
            return merkle.EMPTY_ROOT
        return merkle.fold([digest for _, digest in self._parts])
