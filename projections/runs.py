"""The runs read model: one row per run, a pure function of the Run aggregate's state."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any

from eventsourcing.persistence import StoredEvent

from adapters import readmodels
from adapters.db import Cursor, StoredRow
from domain.engine import Engine
from domain.runs import Run
from domain.timestamps import format_timestamp


def _ts(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def run_view(run: Run) -> dict[str, Any]:
    """The run as the API shows it: the same for the live view, a rebuild and `at_sequence`."""
    review = run.review and {**run.review, "at": _ts(run.review["at"])}
    return {
        "run_id": str(run.id),
        "project_id": run.project_id,
        "parent_run_id": run.parent_run_id,
        "retried_from": run.retried_from,
        "owner": run.owner,
        "task": run.task,
        "agent": run.agent,
        "model": run.model,
        "repository_path": run.repository_path,
        "originating_branch": run.originating_branch,
        "auto_approve_tools": run.auto_approve_tools,
        "status": run.status,
        "result": run.result,
        "failure": run.failure,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "revision": run.revision,
        "comment": run.comment,
        "created_at": _ts(run.created_at),
        "started_at": _ts(run.started_at),
        "ended_at": _ts(run.ended_at),
        "updated_at": _ts(run.modified_on),
        "last_sequence": run.version,
        "step_count": run.step_count,
        "open_gates": [{**g, "opened_at": _ts(g["opened_at"])} for g in run.open_gates],
        "review": review,
        "tree_hash": run.tree_hash,
        "diff_stats": run.diff_stats,
        "branch": run.branch,
        "merge_result": run.merge_result,
        "conflicting_files": run.conflicting_files,
        "coordinator_status": None,
        "archived_at": _ts(run.archived_at),
    }


class RunsProjection:
    """Applies events to the runs view; keeps recently seen runs in memory between batches."""

    name = "runs"

    def __init__(self, engine: Engine, cache_size: int = 5000) -> None:
        self.engine = engine
        self.cache_size = cache_size
        self._runs: OrderedDict[str, Run] = OrderedDict()

    def forget(self) -> None:
        """Drop the in-memory runs (after a failed transaction or a rewind)."""
        self._runs.clear()

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None:
        """Apply a batch of events in position order, writing each touched run once."""
        touched: dict[str, tuple[Run, int]] = {}
        for row in rows:
            run = self._advance(row)
            key = str(row.run_id)
            created = row.position if row.sequence == 1 else touched.get(key, (run, 0))[1]
            touched[key] = (run, created)
        for key, (run, created) in touched.items():
            if run.deleted:
                readmodels.delete_run(cur, key)
            else:
                readmodels.upsert_run(cur, run_view(run), created, run.is_claimable)

    def _advance(self, row: StoredRow) -> Run:
        key = str(row.run_id)
        event = self.engine.mapper.to_domain_event(
            StoredEvent(row.run_id, row.sequence, row.topic, row.state)
        )
        run = self._runs.pop(key, None)
        if row.sequence == 1:
            run = event.mutate(None)
        else:
            if run is None or run.version != row.sequence - 1:
                run = self.engine.get_run(row.run_id, version=row.sequence - 1)
            event.mutate(run)
        self._runs[key] = run
        if len(self._runs) > self.cache_size:
            self._runs.popitem(last=False)
        return run
