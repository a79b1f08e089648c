"""The owners read model: where each user's data starts in the global log.

`GET /api/events` scans the log for one user's events; starting at that user's first
event (and answering at once for a user with none) keeps the cost of the scan from
growing with everyone else's history. Deleted runs and projects keep their owner's entry,
since their events stay in the owner's log.
"""

from __future__ import annotations

from adapters import readmodels
from adapters.db import Cursor, StoredRow
from adapters.stored import current_state
from domain.topics import FIRST_TOPICS


class OwnersProjection:
    """Records each owner's first position (their first run or project)."""

    name = "owners"
    tables: tuple[str, ...] = ("owners_view",)

    def forget(self) -> None:
        """Nothing is held in memory."""

    def reset(self, cur: Cursor) -> None:
        """Empty the view and rewind, for a rebuild."""
        readmodels.reset(cur, "owners_view", self.name)

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None:
        """Note the owner of every run or project created in this batch."""
        for row in rows:
            if row.topic in FIRST_TOPICS:
                owner = current_state(row.topic, row.state)["owner"]
                readmodels.note_owner(cur, owner, row.position)
