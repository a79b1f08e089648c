"""Where each projection has got to in the log: the tracking table."""

from __future__ import annotations

from adapters.db import Cursor

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS projection_tracking (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    )""",
]


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
