"""The auto-pickup policy: starts the ready tasks of boards with auto-pickup on, top first,
while fewer of a board's runs are active than its limit.

It wakes when a board's task moves, its settings change or any run ends (their events'
WAKES fact), and on its timer, which also finishes a start whose run a crash left unmade.
The read models only say which boards to look at; the engine decides on the project as
stored and its runs as they stand (Engine.pick_up_tasks), and exactly once rests there: a
start is recorded on the project, guarded by its version, before its run is made under the
id the start derived. A crash anywhere, or two processes at once, repeats a step that then
finds the task started and its run made.
"""

from __future__ import annotations

import logging
from uuid import UUID

from adapters import readmodels
from adapters.db import Database
from adapters.outage import is_unavailable
from api.service.engine import Engine
from domain.errors import NotFound

log = logging.getLogger("runledger.pickup")
RETRY_SECONDS = 1.0  # after a failure (a project changing too fast, say): look again soon


class BoardPickup:
    """Starts boards' ready tasks within their limits; see the module's docstring."""

    def __init__(self, db: Database, engine: Engine) -> None:
        self.db, self.engine = db, engine

    def tick(self) -> float | None:
        """Look at every board that may have work to start (one bad board never stops the
        rest); soon again if one could not be handled."""
        with self.db.reading() as cur:
            candidates = readmodels.pickup_candidates(cur)
        failed = False
        for project_id, ended in candidates:
            try:
                self.engine.pick_up_tasks(UUID(project_id), frozenset(ended))
            except NotFound:
                continue  # deleted meanwhile
            except Exception as exc:
                if is_unavailable(exc):
                    raise  # the loop backs off until the database is back
                log.exception("board %s: its ready tasks could not be started now", project_id)
                failed = True
        return RETRY_SECONDS if failed else None
