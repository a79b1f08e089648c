"""The runs view: one row per run (its state as a JSON document), for listing and claiming."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from adapters.db import Cursor

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS runs_view (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        project_id TEXT,
        parent_run_id TEXT,
        subtask_key TEXT,
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
    "CREATE INDEX IF NOT EXISTS runs_view_parent ON runs_view (parent_run_id)",
]


def upsert_run(
    cur: Cursor, view: dict[str, Any], created_position: int, claimable: bool, not_before: float
) -> bytes:
    """Write a run's row (its creation position never changes once set); returns its
    document as stored."""
    doc = orjson.dumps(view)
    cur.execute(
        "INSERT INTO runs_view (run_id, owner, project_id, parent_run_id, subtask_key, status, "
        "archived, claimable, not_before, created_position, doc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, "
        "archived = excluded.archived, claimable = excluded.claimable, "
        "not_before = excluded.not_before, doc = excluded.doc",
        (
            view["run_id"],
            view["owner"],
            view["project_id"],
            view["parent_run_id"],
            view["subtask_key"],
            view["status"],
            int(view["archived_at"] is not None),
            int(claimable),
            not_before,
            created_position,
            doc.decode(),
        ),
    )
    return doc


def delete_run(cur: Cursor, run_id: str) -> None:
    """Remove a deleted run from the view."""
    cur.execute("DELETE FROM runs_view WHERE run_id = ?", (run_id,))


def get_run(cur: Cursor, run_id: str, owner: str) -> dict[str, Any] | None:
    """One of the owner's runs, or None."""
    encoded = get_run_json(cur, run_id, owner)
    return None if encoded is None else orjson.loads(encoded)


def get_run_json(cur: Cursor, run_id: str, owner: str) -> bytes | None:
    """One of the owner's runs as it is stored: its document's JSON (None without it)."""
    row = cur.execute(
        "SELECT doc FROM runs_view WHERE run_id = ? AND owner = ?", (run_id, owner)
    ).fetchone()
    if row is None:
        return None
    doc = row[0]
    return doc.encode() if isinstance(doc, str) else bytes(doc)


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
) -> list[tuple[int, bytes]]:
    """The owner's runs, newest first, as (created_position, the document's JSON) pairs."""
    where = ["owner = ?"]
    params: list[str | int] = [owner]
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
    return [(int(pos), doc.encode() if isinstance(doc, str) else bytes(doc)) for pos, doc in rows]


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
        "SELECT run_id, owner, project_id, parent_run_id, subtask_key, status, archived, "
        "claimable, not_before, created_position, doc FROM runs_view ORDER BY run_id"
    ).fetchall()
