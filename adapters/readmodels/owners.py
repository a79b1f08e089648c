"""The owners view: where each user's data starts in the log."""

from __future__ import annotations

from adapters.db import Cursor
from adapters.readmodels.tracking import tracked_position

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS owners_view (
        owner TEXT PRIMARY KEY,
        first_position BIGINT NOT NULL
    )""",
]


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
