"""What the engine's command mixins (run_commands.py, plan_commands.py, gate_commands.py,
project_commands.py) use of the Engine itself (engine.py): declared once, for the type
checker only; at run time the Engine provides them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from api.service.results import Appended
from domain.errors import Conflict
from domain.projects import Project
from domain.runs import Run

if TYPE_CHECKING:
    from eventsourcing.application import Repository

A = TypeVar("A", Run, Project)


class EngineParts:
    """The Engine's clock, id source, settings, reads and load-decide-save loop."""

    if TYPE_CHECKING:
        clock: Callable[[], datetime]
        new_id: Callable[[], UUID]
        lease_seconds: float
        claim_confirm_seconds: float
        retry_backoff: float

        @property
        def repository(self) -> Repository[UUID]: ...

        def get_run(
            self, run_id: UUID, user: str | None = None, version: int | None = None
        ) -> Run: ...

        def _save(self, aggregate: Run | Project) -> Appended: ...

        def _update(
            self, run_id: UUID, user: str | None, decide: Callable[[Run, datetime], None]
        ) -> Appended: ...

        def _update_run(
            self, run_id: UUID, user: str | None, decide: Callable[[Run, datetime], None]
        ) -> tuple[Run, Appended]: ...

        def _load_decide_save(
            self,
            aggregate_id: UUID,
            user: str | None,
            seen: Callable[[], A | None],
            load: Callable[[], A],
            decide: Callable[[A, datetime], None],
            too_fast: Callable[[], Conflict],
            attempts: int = ...,
        ) -> tuple[A, Appended]: ...
