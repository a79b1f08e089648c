"""The usage view: each run's reported token usage and agent-given cost, summed per UTC day
and model (`usage_view`), with the facts about the run that the queries select by
(`usage_runs`: its owner, project and parent, noted when it is submitted). Deleted runs
keep their usage: it was spent.
"""

from __future__ import annotations

from typing import Any

from adapters.db import Cursor

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS usage_runs (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        project_id TEXT,
        parent_run_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS usage_runs_project ON usage_runs (project_id)",
    "CREATE INDEX IF NOT EXISTS usage_runs_parent ON usage_runs (parent_run_id)",
    """CREATE TABLE IF NOT EXISTS usage_view (
        run_id TEXT NOT NULL,
        day TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cached_input_tokens BIGINT NOT NULL,
        agent_cost_usd DOUBLE PRECISION NOT NULL,
        unpriced_input_tokens BIGINT NOT NULL,
        unpriced_output_tokens BIGINT NOT NULL,
        unpriced_cached_input_tokens BIGINT NOT NULL,
        reports BIGINT NOT NULL,
        PRIMARY KEY (run_id, day, model)
    )""",
]
SUMS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "agent_cost_usd",
    "unpriced_input_tokens",
    "unpriced_output_tokens",
    "unpriced_cached_input_tokens",
    "reports",
)


def note_run(
    cur: Cursor, run_id: str, owner: str, project_id: str | None, parent: str | None
) -> None:
    """A run was submitted: who owns it, its project and parent."""
    cur.execute(
        "INSERT INTO usage_runs (run_id, owner, project_id, parent_run_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (run_id) DO NOTHING",
        (run_id, owner, project_id, parent),
    )


def add_usage(cur: Cursor, run_id: str, day: str, model: str, sums: dict[str, Any]) -> None:
    """Add one batch's sums (SUMS) to a run's day and model."""
    values = [sums[name] for name in SUMS]
    updates = ", ".join(f"{name} = usage_view.{name} + excluded.{name}" for name in SUMS)
    cur.execute(
        f"INSERT INTO usage_view (run_id, day, model, {', '.join(SUMS)}) "
        f"VALUES (?, ?, ?, {', '.join('?' * len(SUMS))}) "
        f"ON CONFLICT (run_id, day, model) DO UPDATE SET {updates}",
        (run_id, day, model, *values),
    )


def _rows(cur: Cursor, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    found = cur.execute(sql, params).fetchall()
    return [
        {"key": row[0], "model": row[1], **dict(zip(SUMS, row[2:], strict=True))} for row in found
    ]


_SUMMED = ", ".join(f"SUM(u.{name})" for name in SUMS)


def run_usage(cur: Cursor, run_id: str, with_children: bool) -> list[dict[str, Any]]:
    """A run's sums per model (`key` is the run id, or the child's for a child's)."""
    sql = (
        f"SELECT u.run_id, u.model, {_SUMMED} FROM usage_view u "
        "JOIN usage_runs r ON r.run_id = u.run_id "
        "WHERE u.run_id = ?"
        + (" OR r.parent_run_id = ?" if with_children else "")
        + " GROUP BY u.run_id, u.model ORDER BY u.run_id, u.model"
    )
    return _rows(cur, sql, (run_id, run_id) if with_children else (run_id,))


def project_usage(
    cur: Cursor, project_id: str, owner: str, since: str, until: str
) -> list[dict[str, Any]]:
    """A project's sums per day and model between two days (inclusive; `key` is the day)."""
    sql = (
        f"SELECT u.day, u.model, {_SUMMED} FROM usage_view u "
        "JOIN usage_runs r ON r.run_id = u.run_id "
        "WHERE r.project_id = ? AND r.owner = ? AND u.day >= ? AND u.day <= ? "
        "GROUP BY u.day, u.model ORDER BY u.day, u.model"
    )
    return _rows(cur, sql, (project_id, owner, since, until))
