"""The Merkle log's tables (adapters/merkle_log.py keeps the tree in them), made and kept at
their layout:

- the tree's own (`TREE_TABLES`): `merkle_nodes`, `merkle_bundles`, the leaf index's
  (adapters/merkle_index.py) and `merkle_head`, recomputable from the events;
- `checkpoints (tree_size, root_hash, note, vkey, signed_at)`: every signed checkpoint, kept
  forever, with the verifier key that signed it;
- `audit_meta (name, value)`: the server id (`runledger/<server id>` is the origin),
  generated once per store so that every process on one database signs as one log, and the
  tree tables' layout (`LAYOUT`): a store with another layout has its tree emptied, to be
  appended anew from the events by the log writer (the checkpoints stay and still verify).
"""

from __future__ import annotations

import secrets

from adapters import merkle_index
from adapters.db import Cursor, Database, existing

# Recomputable from the events; `merkle_leaves` held the leaves before layout 3.
TREE_TABLES = ("merkle_nodes", "merkle_bundles", *merkle_index.TABLES, "merkle_head")
_OLD_TREE_TABLES = ("merkle_leaves",)
TABLES = (*TREE_TABLES, "checkpoints", "audit_meta")
# Layouts before: 1 stored every level, leaf hashes at level 0, one merkle_leaves row per
# leaf; 2 stored levels >= 4, one merkle_leaves row (with its event hash) per leaf.
LAYOUT = "3"


def create_tables(db: Database) -> None:
    """Create the log's tables; safe to repeat, also from two processes at once."""
    if _complete(db):
        return
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
            "CREATE TABLE IF NOT EXISTS merkle_bundles ("
            f" bundle BIGINT PRIMARY KEY, hashes {blob} NOT NULL)"
        )
        merkle_index.create_tables(cur, blob)
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


def _complete(db: Database) -> bool:
    """True when create_tables has nothing to do: every table and index there, at LAYOUT,
    with the head's row and the server id. Looked at first, in reads only, so that a process
    starting beside a busy server (a CLI) runs no DDL: on PostgreSQL `CREATE INDEX IF NOT
    EXISTS` takes its table's SHARE lock even when the index exists, and the server's log
    writer, holding merkle_head's row, then waits for that lock while this waits for the row
    (a deadlock, seen in test_rebuild_live)."""
    names = [*TABLES, *merkle_index.INDEXES]
    with db.reading() as cur:
        if existing(cur, db.postgres, names) != set(names):
            return False
        meta = dict(
            cur.execute(
                "SELECT name, value FROM audit_meta WHERE name IN ('log_layout', 'server_id')"
            ).fetchall()
        )
        head = cur.execute("SELECT 1 FROM merkle_head WHERE id = 1").fetchone()
    return meta.get("log_layout") == LAYOUT and "server_id" in meta and head is not None


def _migrate(cur: Cursor) -> None:
    """Drop the tree's tables if they have another layout than LAYOUT (they are recomputable:
    the head goes back to 0 and the writer appends every event again), and record LAYOUT."""
    row = cur.execute("SELECT value FROM audit_meta WHERE name = 'log_layout'").fetchone()
    if row is not None and str(row[0]) == LAYOUT:
        return
    for table in (*TREE_TABLES, *_OLD_TREE_TABLES):
        cur.execute(f"DROP TABLE IF EXISTS {table}")
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
