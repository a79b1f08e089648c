"""The read models' tables, created (or, after a layout change, rebuilt) in one place."""

from __future__ import annotations

import re
from collections.abc import Sequence

from adapters import idempotency, sessions
from adapters.db import Cursor, Database
from adapters.readmodels import (
    board,
    board_settings,
    leases,
    owners,
    plans,
    projects,
    runs,
    tracking,
    usage,
)

# Read models are disposable: when their layout changes, bump this and they are rebuilt.
READ_MODEL_VERSION = 9
READ_MODEL_TABLES = (
    "runs_view",
    "projects_view",
    "leases_view",
    "owners_view",
    "plans_view",
    "board_view",
    "board_settings_view",
    "usage_runs",
    "usage_view",
)

META = [
    """CREATE TABLE IF NOT EXISTS readmodel_meta (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    )""",
]
# The tracking table and the layout's version survive a layout change; the views do not.
KEPT = [*tracking.SCHEMA, *META]
VIEWS = [
    *runs.SCHEMA,
    *projects.SCHEMA,
    *leases.SCHEMA,
    *owners.SCHEMA,
    *plans.SCHEMA,
    *board.SCHEMA,
    *board_settings.SCHEMA,
    *usage.SCHEMA,
]


_NAMES_TABLE = re.compile(r"CREATE (?:TABLE IF NOT EXISTS|INDEX IF NOT EXISTS \w+ ON) (\w+)")


def table_of(statement: str) -> str:
    """The table a CREATE TABLE or CREATE INDEX statement of a SCHEMA list is about."""
    found = _NAMES_TABLE.match(statement)
    assert found is not None, statement
    return found.group(1)


def statements_for(tables: Sequence[str]) -> list[str]:
    """The statements that create these read-model tables and their indexes (and the
    tracking table, which a rebuild keeps beside its fresh tables too)."""
    wanted = {*tables, "projection_tracking"}
    assert wanted <= {*READ_MODEL_TABLES, "projection_tracking"}, tables
    return [s for s in [*tracking.SCHEMA, *VIEWS] if table_of(s) in wanted]


def create_schema(db: Database) -> None:
    """Create the read-model tables; safe to repeat, also from two processes at once.

    Read models from an older layout are dropped (with their tracking) and rebuilt by the
    projections' catch-up from position 0.
    """
    with db.transaction() as cur:
        if db.postgres:
            # Serialise concurrent first starts: CREATE … IF NOT EXISTS can still race.
            cur.execute("SELECT pg_advisory_xact_lock(7341)")
        for statement in KEPT:
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
        for statement in VIEWS:
            cur.execute(statement)
        idempotency.create_table(cur, db.postgres)
        sessions.create_table(cur)  # browser sessions: kept across layouts too


def analyze(db: Database) -> None:
    """Give PostgreSQL's planner statistics of the read models (SQLite plans from its
    indexes). A table never analyzed (a store filled or imported before this process
    started, before autovacuum came by) is planned from default guesses that make a list's
    first page read and sort all of a user's runs rather than walk an index."""
    if not db.postgres:
        return
    with db.reading() as cur:
        for table in READ_MODEL_TABLES:
            cur.execute(f"ANALYZE {table}")


def reset(cur: Cursor, table: str, name: str) -> None:
    """Empty a view and rewind its tracking, for a rebuild."""
    assert table in READ_MODEL_TABLES
    cur.execute(f"DELETE FROM {table}")
    cur.execute("DELETE FROM projection_tracking WHERE name = ?", (name,))
