"""The work plans view: one row per coordinator run, its plan as a JSON document; and the
coordination policy's questions about coordinators and their children."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from adapters.db import Cursor, in_lists

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS plans_view (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS plans_view_status ON plans_view (status)",
]

ACTIVE_RUN = "('pending', 'in_progress', 'paused', 'awaiting_review')"


def upsert_plan(cur: Cursor, view: dict[str, Any], owner: str) -> None:
    """Write a coordinator's plan."""
    cur.execute(
        "INSERT INTO plans_view (run_id, owner, status, doc) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, doc = excluded.doc",
        (view["run_id"], owner, view["status"], orjson.dumps(view).decode()),
    )


def delete_plan(cur: Cursor, run_id: str) -> None:
    """Remove a deleted coordinator's plan."""
    cur.execute("DELETE FROM plans_view WHERE run_id = ?", (run_id,))


def get_plan(cur: Cursor, run_id: str, owner: str) -> dict[str, Any] | None:
    """One of the owner's plans, or None."""
    row = cur.execute(
        "SELECT doc FROM plans_view WHERE run_id = ? AND owner = ?", (run_id, owner)
    ).fetchone()
    return orjson.loads(row[0]) if row else None


MOVING = "('planned', 'dispatching')"


def active_coordinators(cur: Cursor, after: str = "", limit: int = 500) -> list[str]:
    """Coordinators whose plan is moving (planned or dispatching), in id order after
    `after`: a page of them, for a sweep that goes through all."""
    rows = cur.execute(
        f"SELECT run_id FROM plans_view WHERE status IN {MOVING} AND run_id > ? "
        "ORDER BY run_id LIMIT ?",
        (after, limit),
    ).fetchall()
    return [r[0] for r in rows]


def coordinators_of(cur: Cursor, run_ids: Sequence[str]) -> list[str]:
    """The moving coordinators among these runs and among their runs' coordinators (the
    runs an event named: a coordinator, or a child of one)."""
    found: set[str] = set()
    for chunk, marks in in_lists(run_ids):
        rows = cur.execute(
            f"SELECT run_id FROM plans_view WHERE status IN {MOVING} AND (run_id IN ({marks}) "
            f"OR run_id IN (SELECT parent_run_id FROM runs_view WHERE run_id IN ({marks}) "
            "AND subtask_key IS NOT NULL))",
            (*chunk, *chunk),
        ).fetchall()
        found.update(r[0] for r in rows)
    return sorted(found)


def children_to_cancel(
    cur: Cursor, parents: Sequence[str] | None = None, limit: int = 500
) -> list[tuple[str, str]]:
    """(run_id, owner) of active child runs whose coordinator was cancelled or deleted:
    of these `parents`, or of any coordinator (a sweep)."""
    sql = (
        "SELECT c.run_id, c.owner FROM runs_view c LEFT JOIN plans_view p "
        "ON p.run_id = c.parent_run_id WHERE c.subtask_key IS NOT NULL "
        f"AND c.status IN {ACTIVE_RUN} AND (p.run_id IS NULL OR p.status = 'cancelled')"
    )
    if parents is None:
        rows = cur.execute(f"{sql} LIMIT ?", (limit,)).fetchall()
        return [(r[0], r[1]) for r in rows]
    found: list[tuple[str, str]] = []
    for chunk, marks in in_lists(parents):
        rows = cur.execute(f"{sql} AND c.parent_run_id IN ({marks})", chunk).fetchall()
        found.extend((r[0], r[1]) for r in rows)
    return found


def run_docs(cur: Cursor, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The runs view's documents of these runs (those it has), by id."""
    docs: dict[str, dict[str, Any]] = {}
    for chunk, marks in in_lists(run_ids):
        rows = cur.execute(
            f"SELECT run_id, doc FROM runs_view WHERE run_id IN ({marks})", chunk
        ).fetchall()
        docs.update((r[0], orjson.loads(r[1])) for r in rows)
    return docs


def run_statuses(cur: Cursor, run_ids: Sequence[str]) -> dict[str, str]:
    """The status of each of these runs the runs view has, by id."""
    statuses: dict[str, str] = {}
    for chunk, marks in in_lists(run_ids):
        rows = cur.execute(
            f"SELECT run_id, status FROM runs_view WHERE run_id IN ({marks})", chunk
        ).fetchall()
        statuses.update((r[0], r[1]) for r in rows)
    return statuses
