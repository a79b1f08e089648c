"""The global Merkle log, stored: every leaf's event hash and the perfect subtrees from
level `STORED_FROM` up, so that any earlier root and any proof costs O(log n) node reads
plus a few short ranges of leaves (one query each).

Tables (not read models: a read-model layout change never drops them; `rebuild` recomputes
them from the events, row for row):
- `merkle_bundles (bundle, hashes)`: the leaves' event hashes (a leaf hash is
  merkle.leaf_hash of one), 16 to a row: bundle b holds leaves [16b, 16b + 16), 32 bytes
  each, in order; the last bundle may hold fewer, and grows as leaves arrive.
- `merkle_positions`, `merkle_streams`: which event each leaf is (adapters/merkle_index.py):
  its position, and its stream (the run's or project's id) and sequence there, so that a
  run's audit finds its leaves.
- `merkle_nodes (level, idx, hash)`: the perfect subtree over leaves [idx * 2^level,
  (idx + 1) * 2^level), for level >= STORED_FROM only (a lower one lies within one bundle
  and is computed from it when needed: ~1/8 of a row per event rather than ~2). A node is
  written once, when its last leaf arrives, and never changes.
- `merkle_head`: one row, the position of the last event appended and the tree size: the
  log writer's tracking position (adapters/audit_writer.py).
- `checkpoints` and `audit_meta`: adapters/merkle_tables.py, which creates all of them.

Writes run in the caller's transaction (with the events' or the checkpoint's bookkeeping).
Two appenders racing: the one whose head update comes second finds the head moved and is
refused (`OutOfOrder`), its transaction to be rolled back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from uuid import UUID

from adapters import merkle, merkle_index
from adapters.db import Cursor, in_lists
from adapters.merkle import Node
from adapters.merkle_index import insert

STORED_FROM = 4  # the lowest level of stored nodes: a node over 16 leaves
BUNDLE = 1 << STORED_FROM  # leaves per merkle_bundles row: a lowest stored node's


class Leaf(NamedTuple):
    """One event as a leaf: its position, its 32-byte hash, its stream and sequence."""

    position: int
    hash: bytes
    stream_id: str
    sequence: int


@dataclass(frozen=True)
class Leaves:
    """Leaves as columns, as the log appends them: each event's position, 32-byte hash,
    stream (its id's 16 bytes) and sequence there. The log writer makes these straight from
    the events it is handed (a list comprehension per column, no object per leaf)."""

    positions: list[int]
    hashes: list[bytes]
    streams: list[bytes]
    sequences: list[int]

    @classmethod
    def of(cls, leaves: Sequence[Leaf]) -> Leaves:
        """The columns of a list of leaves."""
        keys: dict[str, bytes] = {}  # a batch holds few streams: each id is parsed once
        for leaf in leaves:
            if leaf.stream_id not in keys:
                keys[leaf.stream_id] = UUID(leaf.stream_id).bytes
        return cls(
            [leaf.position for leaf in leaves],
            [leaf.hash for leaf in leaves],
            [keys[leaf.stream_id] for leaf in leaves],
            [leaf.sequence for leaf in leaves],
        )


class OutOfOrder(ValueError):
    """An append that would not extend the log in commit order: refused, nothing written."""


class NotInLog(ValueError):
    """A tree size or leaf index the log does not (yet) have."""


def head(cur: Cursor) -> tuple[int, int]:
    """(position of the last event appended, tree size); (0, 0) for an empty log."""
    row = cur.execute("SELECT position, size FROM merkle_head WHERE id = 1").fetchone()
    if row is None:
        raise RuntimeError("the Merkle log's tables are missing: call create_tables first")
    return int(row[0]), int(row[1])


def head_signed(cur: Cursor) -> tuple[int, int, int | None]:
    """head, and the size of the largest tree signed so far (None before the first), in
    one query."""
    row = cur.execute(
        "SELECT position, size, (SELECT MAX(tree_size) FROM checkpoints) FROM merkle_head "
        "WHERE id = 1"
    ).fetchone()
    if row is None:
        raise RuntimeError("the Merkle log's tables are missing: call create_tables first")
    return int(row[0]), int(row[1]), None if row[2] is None else int(row[2])


def size(cur: Cursor) -> int:
    """The number of leaves in the log."""
    return head(cur)[1]


def append(cur: Cursor, leaves: Sequence[Leaf] | Leaves) -> int:
    """Append events, given in commit order, as the next leaves; the new tree size. Every
    position must come after the last one appended."""
    return append_rooted(cur, leaves)[0]


def append_rooted(
    cur: Cursor, leaves: Sequence[Leaf] | Leaves, head_now: tuple[int, int] | None = None
) -> tuple[int, bytes | None]:
    """append, and the new tree's root, which the append has at hand (None when `leaves`
    is empty: then nothing was read or written). `head_now`: the head as the caller just
    read it in this transaction (else it is read here); the head's update checks it."""
    if not isinstance(leaves, Leaves):
        leaves = Leaves.of(leaves)
    last, at = head(cur) if head_now is None else head_now
    positions, entries = leaves.positions, leaves.hashes
    # Rising positions, after the head's; 32-byte hashes (checked in C: this is per leaf).
    if positions and (positions[0] <= last or positions != sorted(set(positions))):
        raise OutOfOrder(f"positions {positions[:3]}… do not follow position {last}")
    if entries and set(map(len, entries)) != {merkle.HASH_SIZE}:
        raise ValueError("an event hash is 32 bytes")
    if not positions:
        return at, None
    new_size = at + len(positions)
    # Take the head first: a concurrent appender waits here (PostgreSQL's row lock; SQLite's
    # BEGIN IMMEDIATE already serialises), then finds the head moved.
    moved = cur.execute(
        "UPDATE merkle_head SET position = ?, size = ? WHERE id = 1 AND position = ? AND size = ?",
        (positions[-1], new_size, last, at),
    )
    if moved.rowcount != 1:
        raise OutOfOrder("another writer appended to the Merkle log meanwhile")
    first_bundle = at // BUNDLE
    tail = _bundles(cur, [first_bundle]).get(first_bundle, b"") if at % BUNDLE else b""
    frontier = _frontier(at)
    known = _read(cur, frontier, {first_bundle: tail})
    edge = [(level, known[(level, idx)]) for level, idx in frontier]
    nodes_rows = _new_nodes(edge, at, entries)
    new_root = merkle.fold([h for _, h in edge])
    insert(cur, "merkle_nodes (level, idx, hash)", ("int", "bigint", "bytea"), nodes_rows)
    packed = tail + b"".join(entries)
    step = BUNDLE * merkle.HASH_SIZE
    bundles = [
        (first_bundle + k, packed[k * step : (k + 1) * step])
        for k in range((len(packed) + step - 1) // step)
    ]
    # The last bundle, if it held some leaves already, grows: written anew.
    into = "merkle_bundles (bundle, hashes)"
    insert(
        cur,
        into,
        ("bigint", "bytea"),
        bundles,
        "ON CONFLICT (bundle) DO UPDATE SET hashes = excluded.hashes",
    )
    merkle_index.record(cur, at, last, leaves)
    return new_size, new_root


def _frontier(size: int) -> list[Node]:
    """The perfect subtrees on the right edge of a tree of `size`: the left siblings that
    new leaves' nodes may need."""
    return merkle.perfect_parts(0, size) if size else []


def _new_nodes(
    edge: list[tuple[int, bytes]], at: int, entries: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees of level STORED_FROM or more that leaves at, at + 1, … (in that
    order) complete, as (level, index, hash). `edge` is the tree's right edge before them
    (its perfect parts, left to right, as (level, hash)); it becomes the edge after them."""
    sha256 = hashlib.sha256
    made: list[tuple[int, int, bytes]] = []
    for offset, entry in enumerate(entries):
        idx, level, h = at + offset, 0, sha256(b"\x00" + entry).digest()
        while idx & 1:  # a right child: it completes its parent with the edge's last part
            h = sha256(b"\x01" + edge.pop()[1] + h).digest()
            level, idx = level + 1, idx >> 1
            if level >= STORED_FROM:
                made.append((level, idx, h))
        edge.append((level, h))
    return made


def _read(
    cur: Cursor, nodes: Iterable[Node], bundles: dict[int, bytes] | None = None
) -> dict[Node, bytes]:
    """Perfect subtrees' hashes: the stored ones (level >= STORED_FROM) in one query, the
    lower ones computed from their bundle (`bundles`, or read in one more query); every
    one must exist."""
    wanted = sorted(set(nodes))
    stored = [node for node in wanted if node[0] >= STORED_FROM]
    found: dict[Node, bytes] = {}
    if stored:
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(stored))
        rows = cur.execute(
            f"SELECT level, idx, hash FROM merkle_nodes WHERE {where}",
            [v for node in stored for v in node],
        ).fetchall()
        found = {(int(level), int(idx)): bytes(h) for level, idx, h in rows}
    low = [node for node in wanted if node[0] < STORED_FROM]
    if low:
        have = dict(bundles or {})
        needed = sorted({(idx << level) // BUNDLE for level, idx in low} - have.keys())
        have.update(_bundles(cur, needed))
        for level, idx in low:
            start = idx << level
            packed = have.get(start // BUNDLE, b"")
            offset = start % BUNDLE * merkle.HASH_SIZE
            entries = _split(packed[offset : offset + (merkle.HASH_SIZE << level)])
            if len(entries) == 1 << level:
                found[(level, idx)] = merkle.levels([merkle.leaf_hash(e) for e in entries])[-1][0]
    missing = [node for node in wanted if node not in found]
    if missing:
        raise RuntimeError(f"the Merkle log lacks nodes {missing[:3]}: rebuild it")
    return found


def _bundles(cur: Cursor, numbers: Sequence[int]) -> dict[int, bytes]:
    """The bundles numbered `numbers` that are stored, by number."""
    found: dict[int, bytes] = {}
    for chunk, marks in in_lists(numbers):
        rows = cur.execute(
            f"SELECT bundle, hashes FROM merkle_bundles WHERE bundle IN ({marks})", chunk
        ).fetchall()
        found.update((int(n), bytes(h)) for n, h in rows)
    return found


def _split(packed: bytes) -> list[bytes]:
    size = merkle.HASH_SIZE
    return [packed[i : i + size] for i in range(0, len(packed), size)]


def event_hashes(cur: Cursor, indexes: Sequence[int]) -> dict[int, bytes]:
    """The event hashes of the leaves `indexes` that the log has, by leaf index."""
    bundles = _bundles(cur, sorted({i // BUNDLE for i in indexes}))
    found: dict[int, bytes] = {}
    for index in indexes:
        offset = index % BUNDLE * merkle.HASH_SIZE
        entry = bundles.get(index // BUNDLE, b"")[offset : offset + merkle.HASH_SIZE]
        if len(entry) == merkle.HASH_SIZE:
            found[index] = entry
    return found


def entries(cur: Cursor, start: int, end: int) -> list[bytes]:
    """The event hashes of leaves [start, end) (all in the log), in order."""
    rows = cur.execute(
        "SELECT hashes FROM merkle_bundles WHERE bundle >= ? AND bundle <= ? ORDER BY bundle",
        (start // BUNDLE, (end - 1) // BUNDLE),
    ).fetchall()
    packed = b"".join(bytes(row[0]) for row in rows)
    base = start // BUNDLE * BUNDLE
    found = _split(packed[(start - base) * merkle.HASH_SIZE : (end - base) * merkle.HASH_SIZE])
    if len(found) != end - start:
        raise RuntimeError(f"the Merkle log lacks leaves of [{start}, {end}): rebuild it")
    return found


def _subtrees(cur: Cursor, ranges: Sequence[merkle.Range]) -> list[bytes]:
    """The hashes of subtrees of the stored tree, reading their perfect parts at once."""
    parts = [merkle.perfect_parts(start, end) for start, end in ranges]
    found = _read(cur, (node for nodes in parts for node in nodes))
    return [merkle.fold([found[node] for node in nodes]) for nodes in parts]


def _check_size(cur: Cursor, tree_size: int) -> None:
    have = size(cur)
    if not 0 <= tree_size <= have:
        raise NotInLog(f"tree size {tree_size}: the log has {have} leaves")


def root(cur: Cursor, tree_size: int) -> bytes:
    """The root hash of the tree of `tree_size` leaves (the log now or at any earlier size)."""
    _check_size(cur, tree_size)
    return _subtrees(cur, [(0, tree_size)])[0] if tree_size else merkle.EMPTY_ROOT


def inclusion(cur: Cursor, leaf_index: int, tree_size: int) -> list[bytes]:
    """The inclusion proof (RFC 9162 PATH) of a leaf in the tree of `tree_size`."""
    _check_size(cur, tree_size)
    if not 0 <= leaf_index < tree_size:
        raise NotInLog(f"leaf {leaf_index} is not in the tree of size {tree_size}")
    return _subtrees(cur, merkle.inclusion_ranges(leaf_index, tree_size))


def consistency(cur: Cursor, m: int, n: int) -> list[bytes]:
    """The consistency proof (RFC 9162 PROOF) that the tree of size n extends that of m."""
    _check_size(cur, n)
    if not 0 < m <= n:
        raise NotInLog(f"no consistency proof from size {m} to size {n}")
    return _subtrees(cur, merkle.consistency_ranges(m, n))


def leaf_index_of(cur: Cursor, position: int) -> int | None:
    """The leaf index of the event stored at `position`, if it is in the log yet."""
    last_position, size = head(cur)
    if size == 0 or not 0 < position <= last_position:
        return None
    return merkle_index.leaf_index_of(cur, position, size)


def leaf_hash(cur: Cursor, leaf_index: int) -> bytes | None:
    """The leaf hash at `leaf_index` (leaf_hash of its event's hash), if any."""
    entry = event_hashes(cur, [leaf_index]).get(leaf_index)
    return None if entry is None else merkle.leaf_hash(entry)


def reset(cur: Cursor) -> None:
    """Empty the log (to rebuild it from the events); the checkpoints stay."""
    cur.execute("DELETE FROM merkle_nodes")
    cur.execute("DELETE FROM merkle_bundles")
    merkle_index.reset(cur)
    cur.execute("UPDATE merkle_head SET position = 0, size = 0 WHERE id = 1")


def rebuild(cur: Cursor, leaves: Iterable[Leaf], batch: int = 1000) -> int:
    """Empty the log and append every event, in commit order, in batches; the tree size.
    The same events give the same nodes, however they were batched."""
    reset(cur)
    total = 0
    pending: list[Leaf] = []
    for leaf in leaves:
        pending.append(leaf)
        if len(pending) >= batch:
            total = append(cur, pending)
            pending = []
    return append(cur, pending) if pending else total
