"""The list queries: the caller's projects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters import readmodels

if TYPE_CHECKING:
    from api.service.bootstrap import Services


def list_projects(services: Services, owner: str) -> list[dict[str, Any]]:
    """The caller's projects."""
    with services.db.reading() as cur:
        return readmodels.list_projects(cur, owner)
