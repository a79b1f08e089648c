"""The global Merkle log, stored: every leaf's event hash and the perfect subtrees from
level `STORED_FROM` up, so that any earlier root and any proof costs O(log n) node reads
plus a few short ranges of leaves (one query each).

Tables (not read models: a read-model layout change never drops them; `rebuild` recomputes
them from the events, node for node):
- `merkle_leaves (leaf_index, position, stream_id, sequence, hash)`: each leaf, leaf index =
  rank in commit order: its event's position, its stream (the run's or project's id,
  canonical dashed UUID text), its sequence (version) there, so that a run's audit finds its
  leaves by index, and its event's hash (the leaf hash is merkle.leaf_hash of it).
  Positions rise with the leaf index, so a position's leaf is found by the primary key.
- `merkle_nodes (level, idx, hash)`: the perfect subtree over leaves [idx * 2^level,
  (idx + 1) * 2^level), for level >= STORED_FROM only (a lower one, over at most
  2^STORED_FROM leaves, is computed from its leaves when needed: ~1/8 of a row per event
  rather than ~2). A node is written once, when its last leaf arrives, and never changes.
- `merkle_head`: one row, the position of the last event appended and the tree size: the
  log writer's tracking position (adapters/audit_writer.py).
- `checkpoints (tree_size, root_hash, note, vkey, signed_at)`: every signed checkpoint, kept
  forever, with the verifier key that signed it.
- `audit_meta (name, value)`: the server id (`runledger/<server id>` is the origin),
  generated once per store so that every process on one database signs as one log, and the
  tree tables' layout (`LAYOUT`): a store with another layout has its tree emptied, to be
  appended anew from the events by the log writer (the checkpoints stay and still verify).

Writes run in the caller's transaction (with the events' or the checkpoint's bookkeeping).
Two appenders racing: the one whose head update comes second finds the head moved and is
refused (`OutOfOrder`), its transaction to be rolled back.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from adapters import merkle
from adapters.db import Cursor, Database
from adapters.merkle import Node

TREE_TABLES = ("merkle_nodes", "merkle_leaves", "merkle_head")  # recomputable from the events
TABLES = (*TREE_TABLES, "checkpoints", "audit_meta")
STORED_FROM = 4  # the lowest level of stored nodes: a node over 16 leaves
LAYOUT = "2"  # 1: every level stored, leaf hashes at level 0, UNIQUE(position)
_ROWS_PER_INSERT = 180  # up to 5 parameters a row: under SQLite's oldest limit of 999
_SEARCH_SPAN = 4096  # leaves a position's lookup scans at most (by primary key) at the end


class Leaf(NamedTuple):
    """One event as a leaf: its position, its 32-byte hash, its stream and sequence."""

    position: int
    hash: bytes
    stream_id: str
    sequence: int


class OutOfOrder(ValueError):
    """An append that would not extend the log in commit order: refused, nothing written."""


class NotInLog(ValueError):
    """A tree size or leaf index the log does not (yet) have."""


def create_tables(db: Database) -> None:
    """Create the log's tables; safe to repeat, also from two processes at once."""
    blob = "BYTEA" if db.postgres else "BLOB"
    with db.transaction() as cur:
        if db.postgres:
            cur.execute("SELECT pg_advisory_xact_lock(7342)")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        _migrate(cur)
        cur.execute(
            "CREATE TABLE IF NOT EXISTS merkle_nodes ("
            " level INTEGER NOT NULL, idx BIGINT NOT NULL,"
            f" hash {blob} NOT NULL, PRIMARY KEY (level, idx))"
        )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS merkle_leaves ("
            " leaf_index BIGINT PRIMARY KEY, position BIGINT NOT NULL,"
            f" stream_id TEXT NOT NULL, sequence BIGINT NOT NULL, hash {blob} NOT NULL)"
        )
        cur.execute("CREATE INDEX IF NOT EXISTS merkle_leaves_stream ON merkle_leaves (stream_id)")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS merkle_head ("
            " id INTEGER PRIMARY KEY, position BIGINT NOT NULL, size BIGINT NOT NULL)"
        )
        cur.execute(
            "INSERT INTO merkle_head (id, position, size) VALUES (1, 0, 0) "
            "ON CONFLICT (id) DO NOTHING"
        )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS checkpoints ("
            f" tree_size BIGINT PRIMARY KEY, root_hash {blob} NOT NULL, note TEXT NOT NULL,"
            " vkey TEXT NOT NULL, signed_at TEXT NOT NULL)"
        )
        cur.execute(
            "INSERT INTO audit_meta (name, value) VALUES ('server_id', ?) "
            "ON CONFLICT (name) DO NOTHING",
            (secrets.token_hex(8),),
        )


def _migrate(cur: Cursor) -> None:
    """Drop the tree's tables if they have another layout than LAYOUT (they are recomputable:
    the head goes back to 0 and the writer appends every event again), and record LAYOUT."""
    row = cur.execute("SELECT value FROM audit_meta WHERE name = 'log_layout'").fetchone()
    if row is not None and str(row[0]) == LAYOUT:
        return
    if cur.postgres:
        found = "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?"
        old = cur.execute(found, ("merkle_leaves",)).fetchone() is not None
    else:
        found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        old = cur.execute(found, ("merkle_leaves",)).fetchone() is not None
    if old:
        cur.execute("DROP TABLE IF EXISTS merkle_nodes")
        cur.execute("DROP TABLE IF EXISTS merkle_leaves")
        cur.execute("DROP TABLE IF EXISTS merkle_head")
    cur.execute(
        "INSERT INTO audit_meta (name, value) VALUES ('log_layout', ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (LAYOUT,),
    )


def server_id(cur: Cursor) -> str:
    """This store's server id, made once by create_tables: the origin is `runledger/<id>`."""
    row = cur.execute("SELECT value FROM audit_meta WHERE name = 'server_id'").fetchone()
    if row is None:
        raise RuntimeError("the Merkle log's tables are missing: call create_tables first")
    return str(row[0])


def head(cur: Cursor) -> tuple[int, int]:
    """(position of the last event appended, tree size); (0, 0) for an empty log."""
    row = cur.execute("SELECT position, size FROM merkle_head WHERE id = 1").fetchone()
    if row is None:
        raise RuntimeError("the Merkle log's tables are missing: call create_tables first")
    return int(row[0]), int(row[1])


def size(cur: Cursor) -> int:
    """The number of leaves in the log."""
    return head(cur)[1]


def append(cur: Cursor, leaves: Sequence[Leaf]) -> int:
    """Append events, given in commit order, as the next leaves; the new tree size. Every
    position must come after the last one appended."""
    return append_rooted(cur, leaves)[0]


def append_rooted(cur: Cursor, leaves: Sequence[Leaf]) -> tuple[int, bytes | None]:
    """append, and the new tree's root, which the append has at hand (None when `leaves`
    is empty: then nothing was read or written)."""
    last, at = head(cur)
    positions = [leaf.position for leaf in leaves]
    if any(b <= a for a, b in zip([last, *positions], positions, strict=False)):
        raise OutOfOrder(f"positions {positions[:3]}… do not follow position {last}")
    if any(len(leaf.hash) != merkle.HASH_SIZE for leaf in leaves):
        raise ValueError("an event hash is 32 bytes")
    if not leaves:
        return at, None
    new_size = at + len(leaves)
    # Take the head first: a concurrent appender waits here (PostgreSQL's row lock; SQLite's
    # BEGIN IMMEDIATE already serialises), then finds the head moved.
    moved = cur.execute(
        "UPDATE merkle_head SET position = ?, size = ? WHERE id = 1 AND position = ? AND size = ?",
        (positions[-1], new_size, last, at),
    )
    if moved.rowcount != 1:
        raise OutOfOrder("another writer appended to the Merkle log meanwhile")
    frontier = _frontier(at)
    known = _read(cur, frontier)
    edge = [(level, known[(level, idx)]) for level, idx in frontier]
    nodes_rows = _new_nodes(edge, at, [leaf.hash for leaf in leaves])
    new_root = merkle.fold([h for _, h in edge])
    _insert(cur, "merkle_nodes (level, idx, hash)", ("int", "bigint", "bytea"), nodes_rows)
    rows = [
        (at + offset, leaf.position, leaf.stream_id, leaf.sequence, leaf.hash)
        for offset, leaf in enumerate(leaves)
    ]
    columns = ("bigint", "bigint", "text", "bigint", "bytea")
    into = "merkle_leaves (leaf_index, position, stream_id, sequence, hash)"
    _insert(cur, into, columns, rows)
    return new_size, new_root


def _frontier(size: int) -> list[Node]:
    """The perfect subtrees on the right edge of a tree of `size`: the left siblings that
    new leaves' nodes may need."""
    return merkle.perfect_parts(0, size) if size else []


def _new_nodes(
    edge: list[tuple[int, bytes]], at: int, entries: list[bytes]
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


def _insert(
    cur: Cursor, into: str, pg_types: Sequence[str], rows: Sequence[tuple[object, ...]]
) -> None:
    """Insert rows; `pg_types` are the columns' types on PostgreSQL."""
    if not rows:
        return
    if cur.postgres:
        # One array per column, in one short statement whose text never changes: psycopg
        # parses a query of hundreds of placeholders anew on every call (it caches short
        # ones only), which took a third of an append's time. PostgreSQL only, so psycopg's
        # own placeholder rather than `?`.
        # Sent in binary (`%b`): the text format escapes every element with regular
        # expressions, which cost more than the insert itself.
        arrays = ", ".join(f"%b::{kind}[]" for kind in pg_types)
        columns = [list(column) for column in zip(*rows, strict=True)]
        cur.execute(f"INSERT INTO {into} SELECT * FROM unnest({arrays})", columns)
        return
    for i in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[i : i + _ROWS_PER_INSERT]
        values = ", ".join(["(" + ", ".join("?" * len(chunk[0])) + ")"] * len(chunk))
        cur.execute(f"INSERT INTO {into} VALUES {values}", [v for row in chunk for v in row])


def _read(cur: Cursor, nodes: Iterable[Node]) -> dict[Node, bytes]:
    """Perfect subtrees' hashes: the stored ones (level >= STORED_FROM) in one query, the
    lower ones computed from their leaves, read in one more; every one must exist."""
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
        found.update(_computed(cur, low))
    missing = [node for node in wanted if node not in found]
    if missing:
        raise RuntimeError(f"the Merkle log lacks nodes {missing[:3]}: rebuild it")
    return found


def _computed(cur: Cursor, nodes: Sequence[Node]) -> dict[Node, bytes]:
    """Low perfect subtrees' hashes from their leaves (read in one query); a node whose
    leaves are not all there is left out."""
    spans = sorted((idx << level, (idx + 1) << level) for level, idx in nodes)
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    where = " OR ".join(["(leaf_index >= ? AND leaf_index < ?)"] * len(merged))
    rows = cur.execute(
        f"SELECT leaf_index, hash FROM merkle_leaves WHERE {where}",
        [v for span in merged for v in span],
    ).fetchall()
    leaves = {int(i): merkle.leaf_hash(bytes(h)) for i, h in rows}
    found: dict[Node, bytes] = {}
    for level, idx in nodes:
        start = idx << level
        hashes = [leaves.get(i) for i in range(start, start + (1 << level))]
        if all(h is not None for h in hashes):
            found[(level, idx)] = merkle.levels([h for h in hashes if h is not None])[-1][0]
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
    """The leaf index of the event stored at `position`, if it is in the log yet.
    Positions rise strictly with the leaf index, so `position - leaf_index` never falls:
    between the first leaf's and the last's, it bounds where the leaf can be; a binary
    search by primary key narrows that (positions skip numbers only on PostgreSQL, seldom)
    until one short range scan finds it."""
    last_position, size = head(cur)
    if size == 0 or not 0 < position <= last_position:
        return None
    first = cur.execute("SELECT position FROM merkle_leaves WHERE leaf_index = 0").fetchone()
    if first is None or position < int(first[0]):
        return None
    lo = max(0, position - (last_position - (size - 1)))
    hi = min(size - 1, position - int(first[0]))
    while hi - lo > _SEARCH_SPAN:
        mid = (lo + hi) // 2
        at = cur.execute(
            "SELECT position FROM merkle_leaves WHERE leaf_index = ?", (mid,)
        ).fetchone()
        if at is None:
            raise RuntimeError(f"the Merkle log lacks leaf {mid}: rebuild it")
        if int(at[0]) == position:
            return mid
        lo, hi = (mid + 1, hi) if int(at[0]) < position else (lo, mid - 1)
    row = cur.execute(
        "SELECT leaf_index FROM merkle_leaves "
        "WHERE leaf_index >= ? AND leaf_index <= ? AND position = ?",
        (lo, hi, position),
    ).fetchone()
    return None if row is None else int(row[0])


def leaf_hash(cur: Cursor, leaf_index: int) -> bytes | None:
    """The leaf hash at `leaf_index` (leaf_hash of its event's hash), if any."""
    row = cur.execute(
        "SELECT hash FROM merkle_leaves WHERE leaf_index = ?", (leaf_index,)
    ).fetchone()
    return None if row is None else merkle.leaf_hash(bytes(row[0]))


def reset(cur: Cursor) -> None:
    """Empty the log (to rebuild it from the events); the checkpoints stay."""
    cur.execute("DELETE FROM merkle_nodes")
    cur.execute("DELETE FROM merkle_leaves")
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
