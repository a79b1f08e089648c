"""The SQL of the read models, their tracking positions and the idempotency records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from adapters.db import Cursor, Database

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS projection_tracking (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS runs_view (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        project_id TEXT,
        parent_run_id TEXT,
        status TEXT NOT NULL,
        archived INTEGER NOT NULL,
        claimable INTEGER NOT NULL,
        created_position BIGINT NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_view_owner ON runs_view (owner, created_position)",
    "CREATE INDEX IF NOT EXISTS runs_view_claimable ON runs_view (claimable, created_position)",
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        status INTEGER,
        body TEXT,
        PRIMARY KEY (owner, key)
    )""",
]


def create_schema(db: Database) -> None:
    """Create the read-model tables; safe to repeat, also from two processes at once."""
    with db.transaction() as cur:
        if db.postgres:
            # Serialise concurrent first starts: CREATE … IF NOT EXISTS can still race.
            cur.execute("SELECT pg_advisory_xact_lock(7341)")
        for statement in SCHEMA:
            cur.execute(statement)


# -- tracking ---------------------------------------------------------------------------


def tracked_position(cur: Cursor, name: str) -> int:
    """The position a projection has reached (0 before its first event)."""
    row = cur.execute("SELECT position FROM projection_tracking WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def advance_tracking(cur: Cursor, name: str, expected: int, position: int) -> bool:
    """Move a projection from `expected` to `position`; False if someone else moved it."""
    if expected == 0:
        cur.execute(
            "INSERT INTO projection_tracking (name, position) VALUES (?, 0) "
            "ON CONFLICT (name) DO NOTHING",
            (name,),
        )
    cur.execute(
        "UPDATE projection_tracking SET position = ? WHERE name = ? AND position = ?",
        (position, name, expected),
    )
    return cur.rowcount == 1


# -- runs view --------------------------------------------------------------------------


def upsert_run(cur: Cursor, view: dict[str, Any], created_position: int, claimable: bool) -> None:
    """Write a run's row; its creation position never changes once set."""
    cur.execute(
        "INSERT INTO runs_view (run_id, owner, project_id, parent_run_id, status, archived, "
        "claimable, created_position, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, "
        "archived = excluded.archived, claimable = excluded.claimable, doc = excluded.doc",
        (
            view["run_id"],
            view["owner"],
            view["project_id"],
            view["parent_run_id"],
            view["status"],
            int(view["archived_at"] is not None),
            int(claimable),
            created_position,
            orjson.dumps(view).decode(),
        ),
    )


def delete_run(cur: Cursor, run_id: str) -> None:
    """Remove a deleted run from the view."""
    cur.execute("DELETE FROM runs_view WHERE run_id = ?", (run_id,))


def get_run(cur: Cursor, run_id: str, owner: str) -> dict[str, Any] | None:
    """One of the owner's runs, or None."""
    row = cur.execute(
        "SELECT doc FROM runs_view WHERE run_id = ? AND owner = ?", (run_id, owner)
    ).fetchone()
    return orjson.loads(row[0]) if row else None


def list_runs(
    cur: Cursor,
    owner: str,
    *,
    project_id: str | None,
    statuses: Sequence[str],
    parent_run_id: str | None,
    archived: bool,
    before: int | None,
    limit: int,
) -> list[tuple[int, dict[str, Any]]]:
    """The owner's runs, newest first, as (created_position, doc) pairs."""
    where, params = ["owner = ?"], [owner]
    if project_id is not None:
        where.append("project_id = ?")
        params.append(project_id)
    if parent_run_id is not None:
        where.append("parent_run_id = ?")
        params.append(parent_run_id)
    if statuses:
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params.extend(statuses)
    if not archived:
        where.append("archived = 0")
    if before is not None:
        where.append("created_position < ?")
        params.append(before)
    sql = (
        f"SELECT created_position, doc FROM runs_view WHERE {' AND '.join(where)} "
        "ORDER BY created_position DESC LIMIT ?"
    )
    rows = cur.execute(sql, (*params, limit)).fetchall()
    return [(int(pos), orjson.loads(doc)) for pos, doc in rows]


def claimable_runs(cur: Cursor, limit: int) -> list[str]:
    """Runs waiting for a runner, oldest first."""
    rows = cur.execute(
        "SELECT run_id FROM runs_view WHERE claimable = 1 ORDER BY created_position LIMIT ?",
        (limit,),
    ).fetchall()
    return [r[0] for r in rows]


def all_runs(cur: Cursor) -> list[tuple[Any, ...]]:
    """Every row of the view, for comparing a rebuild with the live tables."""
    return cur.execute(
        "SELECT run_id, owner, project_id, parent_run_id, status, archived, claimable, "
        "created_position, doc FROM runs_view ORDER BY run_id"
    ).fetchall()


def reset_runs(cur: Cursor, name: str) -> None:
    """Empty the view and rewind its tracking, for a rebuild."""
    cur.execute("DELETE FROM runs_view")
    cur.execute("DELETE FROM projection_tracking WHERE name = ?", (name,))
