"""Reading a store for `runledger verify` and `runledger export`, without writing a byte
(and without the runtime, whose start hashes unhashed events: a verify must see the store
as it is): its events in commit order, the Merkle log's leaves and the signed checkpoints
it kept (adapters/merkle_log.py's tables, absent from a store made before them), and
which runs belong to a project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import orjson

from adapters import merkle, merkle_index, merkle_log
from adapters.audit_store import StoredCheckpoint
from adapters.db import Database, StoredRow
from adapters.store import StoreSettings
from domain.runs import Run

# The tables the eventsourcing library names for runledger's application (its SQLite
# recorder's default name; its PostgreSQL factory's `<application name>_events`).
EVENTS_TABLES = {"sqlite": "stored_events", "postgres": "runledger_events"}
Progress = Callable[[int], None]


class NoStore(LookupError):
    """The database holds no runledger event store."""


@dataclass(frozen=True)
class StoredLeaf:
    """A leaf of the stored Merkle log: which event (position, and stream and sequence
    when the log records them) and its leaf hash."""

    leaf_index: int
    position: int
    stream_id: str | None
    sequence: int | None
    leaf_hash: bytes


def open_store(settings: StoreSettings) -> Database:
    """The database's event store, for reading; NoStore when there is none."""
    if settings.kind == "sqlite":
        assert settings.sqlite_path is not None
        if not Path(settings.sqlite_path).is_file():
            raise NoStore(f"no SQLite database at {settings.sqlite_path}")
    db = Database(settings)
    table = EVENTS_TABLES[settings.kind]
    if not db.has_table(table):
        db.close()
        raise NoStore(f"no runledger event store in {settings.describe()}")
    db.attach_event_store(table)
    return db


def count_events(db: Database) -> int:
    """How many events the store holds."""
    with db.reading() as cur:
        row = cur.execute(f"SELECT COUNT(*) FROM {db.events_table}").fetchone()
    return int(row[0]) if row else 0


def all_events(db: Database, page: int = 1000) -> Iterator[StoredRow]:
    """Every stored event, in commit order."""
    after = 0
    while rows := db.events_after(after, page):
        yield from rows
        after = rows[-1].position


def stream_events(db: Database, stream: UUID, page: int = 1000) -> Iterator[StoredRow]:
    """One stream's events, in sequence order."""
    after = 0
    while rows := db.run_events(stream, after, page):
        yield from rows
        after = rows[-1].sequence


def project_runs(db: Database, project_id: UUID) -> set[UUID]:
    """The runs submitted in a project (read from their first events)."""
    wanted = str(project_id)
    found: set[UUID] = set()
    with db.reading() as cur:
        rows = cur.execute(
            f"SELECT originator_id, state FROM {db.events_table} WHERE topic = ?",
            (Run.Submitted.TOPIC,),
        ).fetchall()
    for stream, state in rows:
        if orjson.loads(bytes(state)).get("project_id") == wanted:
            found.add(stream if isinstance(stream, UUID) else UUID(stream))
    return found


def stored_checkpoints(db: Database) -> list[StoredCheckpoint]:
    """Every checkpoint the server kept, smallest first ([] when it keeps none yet)."""
    if not db.has_table("checkpoints"):
        return []
    with db.reading() as cur:
        rows = cur.execute(
            "SELECT tree_size, root_hash, note, vkey, signed_at FROM checkpoints ORDER BY tree_size"
        ).fetchall()
    return [
        StoredCheckpoint(int(size), bytes(root), str(note), str(vkey), str(at))
        for size, root, note, vkey, at in rows
    ]


def stored_leaves(db: Database, page: int = 1024) -> Iterator[StoredLeaf]:
    """The stored Merkle log's leaves in order (none when there is no log yet)."""
    if db.has_table("merkle_bundles"):
        yield from _bundled_leaves(db, page)
    elif db.has_table("merkle_leaves") and db.has_table("merkle_nodes"):
        yield from _leaf_rows(db, page)


def _bundled_leaves(db: Database, page: int) -> Iterator[StoredLeaf]:
    """The leaves of a log of layout 3 (adapters/merkle_log.py)."""
    with db.reading() as cur:
        size = merkle_log.size(cur)
    for start in range(0, size, page):
        end = min(size, start + page)
        with db.reading() as cur:
            entries = merkle_log.entries(cur, start, end)
            positions = merkle_index.positions(cur, range(start, end))
            streams = merkle_index.streams(cur, start, end)
        for offset, (entry, position, (stream, sequence)) in enumerate(
            zip(entries, positions, streams, strict=True)
        ):
            yield StoredLeaf(start + offset, position, stream, sequence, merkle.leaf_hash(entry))


def _leaf_rows(db: Database, page: int) -> Iterator[StoredLeaf]:
    """The leaves of a log of layout 1 or 2, one row each (a store last served by an
    older runledger, before its start brings the log to the current layout)."""
    named = _has_columns(db, "merkle_leaves", ("stream_id", "sequence"))
    columns = "l.stream_id, l.sequence" if named else "NULL, NULL"
    # Layout 2 keeps each leaf's event hash in merkle_leaves; layout 1 its leaf hash as the
    # level-0 node.
    hashed = _has_columns(db, "merkle_leaves", ("hash",))
    source = (
        "merkle_leaves l"
        if hashed
        else "merkle_leaves l JOIN merkle_nodes n ON n.level = 0 AND n.idx = l.leaf_index"
    )
    sql = (
        f"SELECT l.leaf_index, l.position, {columns}, {'l' if hashed else 'n'}.hash "
        f"FROM {source} WHERE l.leaf_index >= ? ORDER BY l.leaf_index LIMIT ?"
    )
    at = 0
    while True:
        with db.reading() as cur:
            rows = cur.execute(sql, (at, page)).fetchall()
        if not rows:
            return
        for index, position, stream, sequence, leaf in rows:
            yield StoredLeaf(
                int(index),
                int(position),
                None if stream is None else str(stream),
                None if sequence is None else int(sequence),
                merkle.leaf_hash(bytes(leaf)) if hashed else bytes(leaf),
            )
        at = int(rows[-1][0]) + 1


def _has_columns(db: Database, table: str, columns: tuple[str, ...]) -> bool:
    with db.reading() as cur:
        if db.postgres:
            rows = cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ?",
                (table,),
            ).fetchall()
            have = {r[0] for r in rows}
        else:
            have = {r[1] for r in cur.execute(f"PRAGMA table_info({table})").fetchall()}
    return set(columns) <= have
