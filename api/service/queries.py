"""The list queries: a page of the caller's runs, and the caller's projects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters import readmodels

if TYPE_CHECKING:
    from api.service.bootstrap import Services


def list_runs(
    services: Services,
    owner: str,
    *,
    project_id: str | None,
    statuses: list[str],
    parent_run_id: str | None,
    archived: bool,
    before: int | None,
    limit: int,
) -> list[tuple[int, dict[str, Any]]]:
    """Up to `limit` of the caller's runs, newest first, with the position each sorts by."""
    with services.db.reading() as cur:
        return readmodels.list_runs(
            cur,
            owner,
            project_id=project_id,
            statuses=statuses,
            parent_run_id=parent_run_id,
            archived=archived,
            before=before,
            limit=limit,
        )


def list_projects(services: Services, owner: str) -> list[dict[str, Any]]:
    """The caller's projects."""
    with services.db.reading() as cur:
        return readmodels.list_projects(cur, owner)
