"""The board view: one row per task of a live project, with its last run's summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from adapters.db import Cursor, in_lists
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
        last_failure TEXT,
        shown TEXT NOT NULL,
        task_json TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS board_view_project ON board_view (project_id, rank)",
    "CREATE INDEX IF NOT EXISTS board_view_run ON board_view (run_id)",
]
# `shown` and `task_json` are the task as GET board shows it (its shown column, and the
# whole task encoded), kept with every write of the row, so a read does no work per task.


class Stored(NamedTuple):
    """What the view holds of a task, as its projection compares and rewrites it."""

    rank: int
    run_id: str | None
    doc: str
    run_doc: str | None
    last_failure: str | None


def encode_doc(doc: dict[str, Any]) -> str:
    """A task's own fields as the view stores them (`doc`)."""
    return orjson.dumps(doc).decode()


def shown_task(
    doc: dict[str, Any], rank: int, run_doc: str | None, last_failure: str | None
) -> tuple[str, str]:
    """The task's shown column and the task encoded as the board shows it."""
    run = orjson.loads(run_doc) if run_doc else None
    column = shown_column(doc["column"], doc["run_id"], run and run["status"])
    shown = {
        **doc,
        "column": column,
        "rank": rank,
        "run": orjson.Fragment(run_doc) if run_doc else None,
        "last_failure": orjson.Fragment(last_failure) if last_failure else None,
    }
    return column, orjson.dumps(shown).decode()


def board_tasks(cur: Cursor, project_id: str) -> dict[str, Stored]:
    """Task id → what the view holds of it, for the tasks of a project."""
    rows = cur.execute(
        "SELECT task_id, rank, run_id, doc, run_doc, last_failure FROM board_view "
        "WHERE project_id = ?",
        (project_id,),
    ).fetchall()
    return {r[0]: Stored(*r[1:]) for r in rows}


UPSERT = (
    "INSERT INTO board_view (task_id, project_id, owner, column_name, rank, run_id, doc, "
    "run_doc, last_failure, shown, task_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id) DO UPDATE SET column_name = excluded.column_name, "
    "rank = excluded.rank, run_id = excluded.run_id, doc = excluded.doc, "
    "run_doc = excluded.run_doc, shown = excluded.shown, task_json = excluded.task_json"
)


def task_row(
    project_id: str,
    owner: str,
    doc: dict[str, Any],
    rank: int,
    stored: Stored | None,
    doc_text: str,
) -> tuple[Any, ...]:
    """The row of a task's own fields written over what the view had of it (`stored`); a
    new run id forgets the summary of its previous run (its last failure stays)."""
    new_run = stored is not None and stored.run_id != doc["run_id"]
    run_doc = None if stored is None or new_run else stored.run_doc
    last_failure = None if stored is None else stored.last_failure
    shown, task_json = shown_task(doc, rank, run_doc, last_failure)
    return (
        doc["task_id"],
        project_id,
        owner,
        doc["column"],
        rank,
        doc["run_id"],
        doc_text,
        run_doc,
        last_failure,
        shown,
        task_json,
    )


def upsert_tasks(cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
    """Write task rows (from task_row), all in one go."""
    cur.executemany(UPSERT, rows)


def delete_tasks(cur: Cursor, task_ids: list[str]) -> None:
    """Remove deleted tasks."""
    cur.executemany("DELETE FROM board_view WHERE task_id = ?", [(t,) for t in task_ids])


def delete_board(cur: Cursor, project_id: str) -> None:
    """Remove a deleted project's tasks."""
    cur.execute("DELETE FROM board_view WHERE project_id = ?", (project_id,))


def tasks_of_runs(cur: Cursor, run_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """For each of these runs that is a task's last run: the task and its project, by run
    id (one query for a projection batch's runs, not one per run)."""
    found: dict[str, tuple[str, str]] = {}
    for chunk, marks in in_lists(run_ids):
        rows = cur.execute(
            f"SELECT run_id, task_id, project_id FROM board_view WHERE run_id IN ({marks})",
            chunk,
        ).fetchall()
        for run_id, task_id, project_id in rows:
            found.setdefault(str(run_id), (str(task_id), str(project_id)))
    return found


def set_task_run(
    cur: Cursor, task_id: str, summary: dict[str, Any], failure: dict[str, Any] | None
) -> None:
    """Write the summary of a task's run (and its failure, when it failed)."""
    row = cur.execute(
        "SELECT doc, rank, last_failure FROM board_view WHERE task_id = ?", (task_id,)
    ).fetchone()
    if row is None:
        return
    doc_text, rank, last_failure = row
    run_doc = orjson.dumps(summary).decode()
    if failure is not None:
        last_failure = orjson.dumps(failure).decode()
    shown, task_json = shown_task(orjson.loads(doc_text), rank, run_doc, last_failure)
    cur.execute(
        "UPDATE board_view SET run_doc = ?, last_failure = ?, shown = ?, task_json = ? "
        "WHERE task_id = ?",
        (run_doc, last_failure, shown, task_json, task_id),
    )


def get_board_encoded(cur: Cursor, project_id: str, owner: str) -> dict[str, Any] | None:
    """The owner's project's board, columns in order, each in rank order, its tasks as
    encoded JSON (`orjson.Fragment`s, ready for the answer); None when the project is not
    the owner's (or does not exist). Archived tasks are not shown."""
    found = cur.execute(
        "SELECT 1 FROM projects_view WHERE project_id = ? AND owner = ?", (project_id, owner)
    ).fetchone()
    if found is None:
        return None
    rows = cur.execute(
        "SELECT shown, task_json FROM board_view "
        "WHERE project_id = ? AND column_name <> 'archived' ORDER BY rank, task_id",
        (project_id,),
    ).fetchall()
    columns: dict[str, list[Any]] = {name: [] for name in SHOWN_COLUMNS}
    fragment = orjson.Fragment
    for shown, task_json in rows:
        columns[shown].append(fragment(task_json))
    return {
        "project_id": project_id,
        "settings": get_board_settings(cur, project_id),
        "columns": [{"name": name, "tasks": tasks} for name, tasks in columns.items()],
    }


def get_board(cur: Cursor, project_id: str, owner: str) -> dict[str, Any] | None:
    """get_board_encoded with its tasks decoded, for callers other than the answer."""
    board = get_board_encoded(cur, project_id, owner)
    return None if board is None else dict(orjson.loads(orjson.dumps(board)))
