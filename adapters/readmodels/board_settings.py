"""A board's auto-pickup settings, and what the auto-pickup policy reads to find work.

The policy's queries only narrow down which projects to look at; the engine decides on the
project's events and its runs' current state (api/service/board_commands.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from adapters.db import Cursor
from domain.board import DEFAULT_SETTINGS, DONE_RUN, FAILED_RUN

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS board_settings_view (
        project_id TEXT PRIMARY KEY,
        auto_pickup INTEGER NOT NULL,
        max_concurrent_runs INTEGER NOT NULL,
        stamp BIGINT NOT NULL
    )""",
    # `stamp`: the position of the last event that changed what the project's board shows
    # (its own events, its tasks' runs'): the same however the log was cut into batches,
    # so a rebuilt view has the same stamps, and an answer built at a stamp stays right
    # until the stamp moves.
    # Ready tasks that never ran (what the policy starts), and started tasks whose run the
    # view has not seen (made a moment ago, or never: a crash between start and run).
    "CREATE INDEX IF NOT EXISTS board_view_waiting ON board_view (project_id) "
    "WHERE column_name = 'ready' AND run_id IS NULL",
    "CREATE INDEX IF NOT EXISTS board_view_unseen ON board_view (project_id) "
    "WHERE run_id IS NOT NULL AND run_doc IS NULL",
]
ENDED = DONE_RUN | FAILED_RUN


def set_settings(cur: Cursor, project_id: str, settings: dict[str, Any], stamp: int) -> None:
    """Write a board's settings, as of its project's event at position `stamp`."""
    cur.execute(
        "INSERT INTO board_settings_view (project_id, auto_pickup, max_concurrent_runs, stamp) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (project_id) DO UPDATE SET "
        "auto_pickup = excluded.auto_pickup, max_concurrent_runs = excluded.max_concurrent_runs, "
        "stamp = excluded.stamp",
        (project_id, int(settings["auto_pickup"]), settings["max_concurrent_runs"], stamp),
    )


def touch(cur: Cursor, project_id: str, stamp: int) -> None:
    """A task's run changed what the board shows, at position `stamp`."""
    cur.execute(
        "UPDATE board_settings_view SET stamp = ? WHERE project_id = ?", (stamp, project_id)
    )


def board_stamp(cur: Cursor, project_id: str, owner: str) -> int | None:
    """The board's stamp, if the project is the owner's (None otherwise)."""
    row = cur.execute(
        "SELECT s.stamp FROM board_settings_view s JOIN projects_view p "
        "ON p.project_id = s.project_id WHERE s.project_id = ? AND p.owner = ?",
        (project_id, owner),
    ).fetchone()
    return None if row is None else int(row[0])


def delete_settings(cur: Cursor, project_id: str | None = None) -> None:
    """Forget a deleted project's settings (every project's, for a rebuild)."""
    if project_id is None:
        cur.execute("DELETE FROM board_settings_view")
    else:
        cur.execute("DELETE FROM board_settings_view WHERE project_id = ?", (project_id,))


def get_board_settings(cur: Cursor, project_id: str) -> dict[str, Any]:
    """A board's settings (the defaults until a user set them)."""
    row = cur.execute(
        "SELECT auto_pickup, max_concurrent_runs FROM board_settings_view WHERE project_id = ?",
        (project_id,),
    ).fetchone()
    if row is None:
        return dict(DEFAULT_SETTINGS)
    return {"auto_pickup": bool(row[0]), "max_concurrent_runs": int(row[1])}


def pickup_candidates(cur: Cursor) -> list[tuple[str, list[str]]]:
    """The projects the auto-pickup policy should look at, each with its tasks' runs the
    view knows to have ended (an ended run never runs again): those with auto-pickup on, a
    ready task that never ran and, as far as the view knows, room under their limit; and
    those with a started task whose run the view has not seen."""
    unseen = {
        row[0]
        for row in cur.execute(
            "SELECT DISTINCT project_id FROM board_view "
            "WHERE run_id IS NOT NULL AND run_doc IS NULL"
        ).fetchall()
    }
    waiting = dict(
        cur.execute(
            "SELECT s.project_id, s.max_concurrent_runs FROM board_settings_view s "
            "WHERE s.auto_pickup = 1 AND EXISTS (SELECT 1 FROM board_view b "
            "WHERE b.project_id = s.project_id AND b.column_name = 'ready' "
            "AND b.run_id IS NULL)"
        ).fetchall()
    )
    found = []
    for project_id in sorted(unseen | set(waiting)):
        rows = cur.execute(
            "SELECT run_id, run_doc FROM board_view WHERE project_id = ? AND run_id IS NOT NULL",
            (project_id,),
        ).fetchall()
        ended = [run_id for run_id, doc in rows if doc and orjson.loads(doc)["status"] in ENDED]
        if project_id in unseen or len(rows) - len(ended) < waiting[project_id]:
            found.append((project_id, ended))
    return found
