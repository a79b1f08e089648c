"""The SQL of the read models and their tracking positions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from adapters import idempotency
from adapters.db import Cursor, Database

# Read models are disposable: when their layout changes, bump this and they are rebuilt.
READ_MODEL_VERSION = 2
READ_MODEL_TABLES = ("runs_view", "projects_view", "leases_view", "owners_view")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS projection_tracking (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS readmodel_meta (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS runs_view (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        project_id TEXT,
        parent_run_id TEXT,
        status TEXT NOT NULL,
        archived INTEGER NOT NULL,
        claimable INTEGER NOT NULL,
        not_before DOUBLE PRECISION NOT NULL,
        created_position BIGINT NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_view_owner ON runs_view (owner, created_position)",
    "CREATE INDEX IF NOT EXISTS runs_view_claimable ON runs_view (claimable, created_position)",
    "CREATE INDEX IF NOT EXISTS runs_view_status ON runs_view (status)",
    """CREATE TABLE IF NOT EXISTS projects_view (
        project_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_position BIGINT NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS projects_view_owner ON projects_view (owner, created_position)",
    """CREATE TABLE IF NOT EXISTS leases_view (
        run_id TEXT PRIMARY KEY,
        lease_id TEXT NOT NULL,
        fencing_token BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS leases_view_lease ON leases_view (lease_id)",
    "CREATE INDEX IF NOT EXISTS leases_view_expiry ON leases_view (expires_at)",
    """CREATE TABLE IF NOT EXISTS owners_view (
        owner TEXT PRIMARY KEY,
        first_position BIGINT NOT NULL
    )""",
]


def create_schema(db: Database) -> None:
    """Create the read-model tables; safe to repeat, also from two processes at once.

    Read models from an older layout are dropped (with their tracking) and rebuilt by the
    projections' catch-up from position 0.
    """
    with db.transaction() as cur:
        if db.postgres:
            # Serialise concurrent first starts: CREATE … IF NOT EXISTS can still race.
            cur.execute("SELECT pg_advisory_xact_lock(7341)")
        for statement in SCHEMA[:2]:
            cur.execute(statement)
        row = cur.execute("SELECT version FROM readmodel_meta WHERE id = 1").fetchone()
        if row is None or int(row[0]) != READ_MODEL_VERSION:
            for table in READ_MODEL_TABLES:
                cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute("DELETE FROM projection_tracking")
            cur.execute("DELETE FROM readmodel_meta")
            cur.execute(
                "INSERT INTO readmodel_meta (id, version) VALUES (1, ?)", (READ_MODEL_VERSION,)
            )
        for statement in SCHEMA[2:]:
            cur.execute(statement)
        idempotency.create_table(cur, db.postgres)


# -- tracking ---------------------------------------------------------------------------


def tracked_position(cur: Cursor, name: str) -> int:
    """The position a projection has reached (0 before its first event)."""
    row = cur.execute("SELECT position FROM projection_tracking WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def tracked_positions(cur: Cursor) -> dict[str, int]:
    """Every projection's tracked position, in one read."""
    rows = cur.execute("SELECT name, position FROM projection_tracking").fetchall()
    return {str(name): int(position) for name, position in rows}


def advance_tracking_all(cur: Cursor, expected: dict[str, int], position: int) -> bool:
    """Move several projections to `position` at once; False if any was not where expected.

    The usual case — all at the same position — is one statement.
    """
    for name, at in expected.items():
        if at == 0:
            cur.execute(
                "INSERT INTO projection_tracking (name, position) VALUES (?, 0) "
                "ON CONFLICT (name) DO NOTHING",
                (name,),
            )
    by_position: dict[int, list[str]] = {}
    for name, at in expected.items():
        by_position.setdefault(at, []).append(name)
    for at, names in by_position.items():
        cur.execute(
            "UPDATE projection_tracking SET position = ? "
            f"WHERE position = ? AND name IN ({', '.join('?' * len(names))})",
            (position, at, *names),
        )
        if cur.rowcount != len(names):
            return False
    return True


# -- runs view --------------------------------------------------------------------------


def upsert_run(
    cur: Cursor, view: dict[str, Any], created_position: int, claimable: bool, not_before: float
) -> None:
    """Write a run's row; its creation position never changes once set."""
    cur.execute(
        "INSERT INTO runs_view (run_id, owner, project_id, parent_run_id, status, archived, "
        "claimable, not_before, created_position, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, "
        "archived = excluded.archived, claimable = excluded.claimable, "
        "not_before = excluded.not_before, doc = excluded.doc",
        (
            view["run_id"],
            view["owner"],
            view["project_id"],
            view["parent_run_id"],
            view["status"],
            int(view["archived_at"] is not None),
            int(claimable),
            not_before,
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


def claimable_runs(cur: Cursor, limit: int, now: float) -> list[str]:
    """Runs waiting for a runner whose retry backoff is over, oldest first."""
    rows = cur.execute(
        "SELECT run_id FROM runs_view WHERE claimable = 1 AND not_before <= ? "
        "ORDER BY created_position LIMIT ?",
        (now, limit),
    ).fetchall()
    return [r[0] for r in rows]


def next_claimable_at(cur: Cursor, now: float) -> float | None:
    """When the next run in backoff becomes claimable (epoch seconds), if any."""
    row = cur.execute(
        "SELECT MIN(not_before) FROM runs_view WHERE claimable = 1 AND not_before > ?", (now,)
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def runs_in_status(cur: Cursor, status: str, limit: int = 100) -> list[str]:
    """Ids of runs in one status, oldest first (for the policies)."""
    rows = cur.execute(
        "SELECT run_id FROM runs_view WHERE status = ? ORDER BY created_position LIMIT ?",
        (status, limit),
    ).fetchall()
    return [r[0] for r in rows]


def runs_of_missing_projects(cur: Cursor, limit: int = 100) -> list[tuple[str, str]]:
    """(run_id, project_id) of active runs whose project is not in the projects view."""
    rows = cur.execute(
        "SELECT run_id, project_id FROM runs_view WHERE project_id IS NOT NULL AND status IN "
        "('pending', 'in_progress', 'paused', 'awaiting_review') AND project_id NOT IN "
        "(SELECT project_id FROM projects_view) LIMIT ?",
        (limit,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def active_runs_of_project(cur: Cursor, project_id: str) -> list[str]:
    """Ids of a project's runs that have not ended."""
    rows = cur.execute(
        "SELECT run_id FROM runs_view WHERE project_id = ? AND status IN "
        "('pending', 'in_progress', 'paused', 'awaiting_review', 'merging')",
        (project_id,),
    ).fetchall()
    return [r[0] for r in rows]


def all_runs(cur: Cursor) -> list[tuple[Any, ...]]:
    """Every row of the view, for comparing a rebuild with the live tables."""
    return cur.execute(
        "SELECT run_id, owner, project_id, parent_run_id, status, archived, claimable, "
        "not_before, created_position, doc FROM runs_view ORDER BY run_id"
    ).fetchall()


def reset(cur: Cursor, table: str, name: str) -> None:
    """Empty a view and rewind its tracking, for a rebuild."""
    assert table in READ_MODEL_TABLES
    cur.execute(f"DELETE FROM {table}")
    cur.execute("DELETE FROM projection_tracking WHERE name = ?", (name,))


# -- projects view ------------------------------------------------------------------------


def upsert_project(cur: Cursor, view: dict[str, Any], created_position: int) -> None:
    """Write a project's row."""
    cur.execute(
        "INSERT INTO projects_view (project_id, owner, created_position, doc) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (project_id) DO UPDATE SET doc = excluded.doc",
        (view["project_id"], view["owner"], created_position, orjson.dumps(view).decode()),
    )


def delete_project(cur: Cursor, project_id: str) -> None:
    """Remove a deleted project."""
    cur.execute("DELETE FROM projects_view WHERE project_id = ?", (project_id,))


def get_project(cur: Cursor, project_id: str, owner: str) -> dict[str, Any] | None:
    """One of the owner's projects, or None."""
    row = cur.execute(
        "SELECT doc FROM projects_view WHERE project_id = ? AND owner = ?", (project_id, owner)
    ).fetchone()
    return orjson.loads(row[0]) if row else None


def list_projects(cur: Cursor, owner: str) -> list[dict[str, Any]]:
    """The owner's projects, oldest first."""
    rows = cur.execute(
        "SELECT doc FROM projects_view WHERE owner = ? ORDER BY created_position", (owner,)
    ).fetchall()
    return [orjson.loads(r[0]) for r in rows]


# -- leases view (the lease-expiry policy's own state) ------------------------------------


def upsert_lease(
    cur: Cursor, run_id: str, lease_id: str, fencing_token: int, expires_at: float
) -> None:
    """Record a run's current lease."""
    cur.execute(
        "INSERT INTO leases_view (run_id, lease_id, fencing_token, expires_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET lease_id = excluded.lease_id, "
        "fencing_token = excluded.fencing_token, expires_at = excluded.expires_at",
        (run_id, lease_id, fencing_token, expires_at),
    )


def renew_lease(cur: Cursor, run_id: str, lease_id: str, expires_at: float) -> None:
    """A heartbeat moved a lease's expiry."""
    cur.execute(
        "UPDATE leases_view SET expires_at = ? WHERE run_id = ? AND lease_id = ?",
        (expires_at, run_id, lease_id),
    )


def delete_lease(cur: Cursor, run_id: str) -> None:
    """A run no longer holds a lease."""
    cur.execute("DELETE FROM leases_view WHERE run_id = ?", (run_id,))


def run_of_lease(cur: Cursor, lease_id: str) -> str | None:
    """The run holding a lease id, if the lease is current."""
    row = cur.execute("SELECT run_id FROM leases_view WHERE lease_id = ?", (lease_id,)).fetchone()
    return row[0] if row else None


def expired_leases(cur: Cursor, now: float, limit: int = 100) -> list[tuple[str, int]]:
    """(run_id, fencing_token) of leases past their expiry."""
    rows = cur.execute(
        "SELECT run_id, fencing_token FROM leases_view WHERE expires_at <= ? "
        "ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def next_lease_expiry(cur: Cursor) -> float | None:
    """The earliest lease expiry (epoch seconds), if any lease is held."""
    row = cur.execute("SELECT MIN(expires_at) FROM leases_view").fetchone()
    return float(row[0]) if row and row[0] is not None else None


# -- owners view (where each user's data starts in the log) -------------------------------


def note_owner(cur: Cursor, owner: str, position: int) -> None:
    """Remember `position` as the owner's first, unless an earlier one is known."""
    cur.execute(
        "INSERT INTO owners_view (owner, first_position) VALUES (?, ?) "
        "ON CONFLICT (owner) DO NOTHING",
        (owner, position),
    )


def owner_start(cur: Cursor, owner: str) -> int:
    """A position before which the log holds none of the owner's events: just before their
    first one, or, for an owner not seen yet, the position the owners view has reached."""
    # The tracking first: an owner absent after it was read was absent when it was written.
    reached = tracked_position(cur, "owners")
    row = cur.execute("SELECT first_position FROM owners_view WHERE owner = ?", (owner,)).fetchone()
    return reached if row is None else int(row[0]) - 1
