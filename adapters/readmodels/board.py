"""The board view: one row per task of a live project, with its last run's summary."""

from __future__ import annotations

from typing import Any

import orjson

from adapters.db import Cursor
from adapters.readmodels.board_settings import get_board_settings
from domain.board import SHOWN_COLUMNS, shown_column

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS board_view (
        task_id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        column_name TEXT NOT NULL,
        rank INTEGER NOT NULL,
        run_id TEXT,
        doc TEXT NOT NULL,
        run_doc TEXT,
        last_failure TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS board_view_project ON board_view (project_id, rank)",
    "CREATE INDEX IF NOT EXISTS board_view_run ON board_view (run_id)",
]


def board_runs(cur: Cursor, project_id: str) -> dict[str, str | None]:
    """Task id → its run id, for the tasks of a project."""
    rows = cur.execute(
        "SELECT task_id, run_id FROM board_view WHERE project_id = ?", (project_id,)
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def upsert_task(
    cur: Cursor, project_id: str, owner: str, doc: dict[str, Any], rank: int, new_run: bool
) -> None:
    """Write a task's own fields; `new_run` forgets the summary of its previous run (its
    last failure stays)."""
    cur.execute(
        "INSERT INTO board_view (task_id, project_id, owner, column_name, rank, run_id, doc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE SET "
        "column_name = excluded.column_name, rank = excluded.rank, "
        "run_id = excluded.run_id, doc = excluded.doc",
        (
            doc["task_id"],
            project_id,
            owner,
            doc["column"],
            rank,
            doc["run_id"],
            orjson.dumps(doc).decode(),
        ),
    )
    if new_run:
        cur.execute("UPDATE board_view SET run_doc = NULL WHERE task_id = ?", (doc["task_id"],))


def delete_tasks(cur: Cursor, task_ids: list[str]) -> None:
    """Remove deleted tasks."""
    for task_id in task_ids:
        cur.execute("DELETE FROM board_view WHERE task_id = ?", (task_id,))


def delete_board(cur: Cursor, project_id: str) -> None:
    """Remove a deleted project's tasks."""
    cur.execute("DELETE FROM board_view WHERE project_id = ?", (project_id,))


def task_of_run(cur: Cursor, run_id: str) -> str | None:
    """The task whose last run this is, if any."""
    row = cur.execute("SELECT task_id FROM board_view WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else str(row[0])


def set_task_run(
    cur: Cursor, task_id: str, summary: dict[str, Any], failure: dict[str, Any] | None
) -> None:
    """Write the summary of a task's run (and its failure, when it failed)."""
    cur.execute(
        "UPDATE board_view SET run_doc = ? WHERE task_id = ?",
        (orjson.dumps(summary).decode(), task_id),
    )
    if failure is not None:
        cur.execute(
            "UPDATE board_view SET last_failure = ? WHERE task_id = ?",
            (orjson.dumps(failure).decode(), task_id),
        )


def get_board(cur: Cursor, project_id: str, owner: str) -> dict[str, Any] | None:
    """The owner's project's board, columns in order, each in rank order; None when the
    project is not the owner's (or does not exist). Archived tasks are not shown."""
    found = cur.execute(
        "SELECT 1 FROM projects_view WHERE project_id = ? AND owner = ?", (project_id, owner)
    ).fetchone()
    if found is None:
        return None
    rows = cur.execute(
        "SELECT doc, rank, run_doc, last_failure FROM board_view "
        "WHERE project_id = ? AND column_name <> 'archived' ORDER BY rank, task_id",
        (project_id,),
    ).fetchall()
    columns: dict[str, list[dict[str, Any]]] = {name: [] for name in SHOWN_COLUMNS}
    for doc_text, rank, run_text, failure_text in rows:
        doc = orjson.loads(doc_text)
        run = orjson.loads(run_text) if run_text else None
        column = shown_column(doc["column"], doc["run_id"], run and run["status"])
        columns[column].append(
            {
                **doc,
                "column": column,
                "rank": rank,
                "run": run,
                "last_failure": orjson.loads(failure_text) if failure_text else None,
            }
        )
    return {
        "project_id": project_id,
        "settings": get_board_settings(cur, project_id),
        "columns": [{"name": name, "tasks": tasks} for name, tasks in columns.items()],
    }
