"""The projects view: one row per live project."""

from __future__ import annotations

from typing import Any

import orjson

from adapters.db import Cursor

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS projects_view (
        project_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_position BIGINT NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS projects_view_owner ON projects_view (owner, created_position)",
]


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
