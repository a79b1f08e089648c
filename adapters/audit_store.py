"""The audit tables' rows beyond the tree itself: signed checkpoints, a stream's leaves, and
the events as the log writer reads them (tables: adapters/merkle_log.py)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from adapters import merkle_index, merkle_log
from adapters.db import Cursor, Database
from adapters.merkle import leaf_hash
from adapters.merkle_log import Leaf


@dataclass(frozen=True)
class StoredCheckpoint:
    """One signed checkpoint as kept: size, root, the signed note, the key that signed it."""

    tree_size: int
    root_hash: bytes
    note: str
    vkey: str
    signed_at: str


@dataclass(frozen=True)
class StreamLeaf:
    """One leaf of a stream's event: where it is in the tree and what it holds."""

    leaf_index: int
    position: int
    sequence: int
    leaf_hash: bytes


_CHECKPOINT = "SELECT tree_size, root_hash, note, vkey, signed_at FROM checkpoints"


def _checkpoint(row: tuple[object, ...] | None) -> StoredCheckpoint | None:
    if row is None:
        return None
    size, root, note, vkey, signed_at = row
    assert isinstance(size, int) and isinstance(root, bytes | memoryview)
    return StoredCheckpoint(int(size), bytes(root), str(note), str(vkey), str(signed_at))


def insert_checkpoint(cur: Cursor, checkpoint: StoredCheckpoint) -> bool:
    """Keep a signed checkpoint; False when one of that size is kept already (it stays)."""
    cur.execute(
        "INSERT INTO checkpoints (tree_size, root_hash, note, vkey, signed_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING",
        (
            checkpoint.tree_size,
            checkpoint.root_hash,
            checkpoint.note,
            checkpoint.vkey,
            checkpoint.signed_at,
        ),
    )
    return cur.rowcount == 1


def latest_checkpoint(cur: Cursor) -> StoredCheckpoint | None:
    """The checkpoint of the largest tree signed so far, if any."""
    return _checkpoint(cur.execute(f"{_CHECKPOINT} ORDER BY tree_size DESC LIMIT 1").fetchone())


def checkpoint_at(cur: Cursor, tree_size: int) -> StoredCheckpoint | None:
    """The checkpoint kept for a tree of exactly `tree_size` leaves, if one was signed."""
    return _checkpoint(cur.execute(f"{_CHECKPOINT} WHERE tree_size = ?", (tree_size,)).fetchone())


def stream_leaves(cur: Cursor, stream_id: UUID) -> list[StreamLeaf]:
    """Every leaf of a stream's events that the log holds, in leaf order (a sequence may
    come back more than once if its event was rewritten at a new position: the first is
    the one recorded). A leaf whose hash or position the log lost (its rows damaged) is
    left out, for the audit to find its event missing from the log."""
    indexes: list[int] = []
    sequences: list[int] = []
    for first, sequence, count in merkle_index.stream_runs(cur, stream_id):
        indexes.extend(range(first, first + count))
        sequences.extend(range(sequence, sequence + count))
    try:
        positions = merkle_index.positions(cur, indexes)
    except RuntimeError:
        return []
    entries = merkle_log.event_hashes(cur, indexes)
    return [
        StreamLeaf(index, position, sequence, leaf_hash(entries[index]))
        for index, position, sequence in zip(indexes, positions, sequences, strict=True)
        if index in entries
    ]


def event_leaves(db: Database, cur: Cursor, after: int, limit: int) -> list[Leaf | None]:
    """The events after a position, in commit order, as leaves; None for an event not
    hashed yet (the backfill has not reached it), which nothing after may overtake."""
    pos = db.position_column
    rows = cur.execute(
        f"SELECT {pos}, originator_id, originator_version, hash FROM {db.events_table} "
        f"WHERE {pos} > ? ORDER BY {pos} LIMIT ?",
        (after, limit),
    ).fetchall()
    leaves: list[Leaf | None] = []
    names: dict[object, str] = {}  # a batch holds few streams: each id is parsed once
    for position, originator, version, digest in rows:
        if digest is None:
            leaves.append(None)
            continue
        name = names.get(originator)
        if name is None:
            stream = originator if isinstance(originator, UUID) else UUID(originator)
            name = names[originator] = str(stream)
        leaves.append(Leaf(int(position), bytes(digest), name, int(version)))
    return leaves
