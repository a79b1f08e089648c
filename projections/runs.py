"""The runs read model: one row per run, a pure function of the Run aggregate's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters import readmodels
from adapters.db import Cursor, StoredRow
from adapters.stored import current_state
from domain.runs import Run
from domain.runs.usage import token_totals
from domain.timestamps import format_timestamp, parse_timestamp
from domain.topics import LEASE_KEEPING_TOPICS, RUN_TOPICS
from projections.folding import Folder, Loader
from projections.plans import plan_view
from projections.run_documents import RunDocuments


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
        "coordinator_status": run.coordinator_status,
        "subtask_key": run.subtask_key,
        "task_id": run.task_id,
        "directives": [{**d, "at": _ts(d["at"])} for d in run.directives],
        "not_before": run.not_before,
        "archived_at": _ts(run.archived_at),
        "usage": token_totals(run.usage),
    }


class RunsProjection:
    """Applies run events to the runs view (and a coordinator's to the plans view),
    writing each touched run once per batch."""

    name = "runs"
    tables: tuple[str, ...] = ("runs_view", "plans_view")

    def __init__(self, engine: Loader, documents: RunDocuments | None = None) -> None:
        self.folder = Folder(engine)
        self.documents = documents  # the live view's documents in memory (not a rebuild's)

    def forget(self) -> None:
        """Drop the in-memory runs (after a failed transaction or a rewind)."""
        self.folder.forget()
        if self.documents is not None:
            self.documents.clear()

    def reset(self, cur: Cursor) -> None:
        """Empty the views and rewind, for a rebuild."""
        readmodels.reset(cur, "runs_view", self.name)
        readmodels.reset(cur, "plans_view", self.name)

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None:
        """Apply a batch of events in position order."""
        run_rows = [row for row in rows if row.topic in RUN_TOPICS]
        created = {row.run_id: row.position for row in run_rows if row.sequence == 1}
        for key, run in self.folder.fold(run_rows).items():
            doc = None
            if run.deleted:
                readmodels.delete_run(cur, str(key))
                readmodels.delete_plan(cur, str(key))
            else:
                if run.plan is not None:
                    readmodels.upsert_plan(cur, plan_view(run), run.owner)
                not_before = parse_timestamp(run.not_before).timestamp() if run.not_before else 0.0
                view = run_view(run)
                doc = readmodels.upsert_run(
                    cur, view, created.get(key, 0), run.is_claimable, not_before
                )
            if self.documents is not None:
                self.documents.stage(str(key), run.owner, doc)


# Events that leave a run's lease as it was (their KEEPS_LEASE fact); claims and renewals
# set it; any other run event either ends the lease or happens when the run holds none.
# Runner output keeps the lease, and confirms its claim.
_LEASE_KEEPING = LEASE_KEEPING_TOPICS
_OUTPUT = Run.OutputRecorded.TOPIC
CONFIRMED_KEPT = 100_000  # runs whose confirmed claim the leases projection remembers


class LeasesProjection:
    """The lease-expiry policy's own state: which run holds which lease until when, and
    which claims are still to be confirmed by when; and who holds them (GET /api/runners).

    It reads only the few fields it needs from each event, so runner output (most of the
    log) costs it a set lookup; a run's first output after a claim costs one update, and
    later output none: it remembers which runs' claims it has confirmed (`_confirmed`, up
    to CONFIRMED_KEPT runs), until their next claim or a `forget`.
    """

    name = "leases"
    tables: tuple[str, ...] = ("leases_view",)

    def __init__(self) -> None:
        self._confirmed: set[str] = set()  # runs whose lease, if any, needs no confirming

    def forget(self) -> None:
        """Drop what it remembers of confirmed claims (after a failed transaction or a
        rewind; tables rebuilt and swapped in agree with it, being made from the same
        events)."""
        self._confirmed.clear()

    def reset(self, cur: Cursor) -> None:
        """Empty the view and rewind, for a rebuild."""
        readmodels.reset(cur, "leases_view", self.name)

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None:
        """Record each run's current lease, or its absence."""
        spoke: dict[str, None] = {}  # runs whose runner sent output, in order
        for row in rows:
            if row.topic == _OUTPUT:
                spoke[str(row.run_id)] = None
                continue
            if row.topic in _LEASE_KEEPING or row.topic not in RUN_TOPICS:
                continue
            run_id = str(row.run_id)
            if row.topic == Run.Claimed.TOPIC:
                self._confirm(cur, spoke)
                self._confirmed.discard(run_id)  # a new claim, to be confirmed anew
                state = current_state(row.topic, row.state)
                confirm_by = state["confirm_by"]
                lease = {
                    **state,
                    "expires_at": parse_timestamp(state["lease_expires_at"]).timestamp(),
                    "claimed_at": format_timestamp(parse_timestamp(state["timestamp"])),
                    "confirm_by": parse_timestamp(confirm_by).timestamp() if confirm_by else None,
                }
                readmodels.upsert_lease(cur, run_id, lease)
            elif row.topic == Run.LeaseRenewed.TOPIC:
                state = current_state(row.topic, row.state)
                expiry = state["lease_expires_at"]
                expires = parse_timestamp(expiry).timestamp()
                renewed_at = format_timestamp(parse_timestamp(state["timestamp"]))
                readmodels.renew_lease(cur, run_id, state["lease_id"], expires, renewed_at, expiry)
            else:
                spoke.pop(run_id, None)
                readmodels.delete_lease(cur, run_id)
        self._confirm(cur, spoke)

    def _confirm(self, cur: Cursor, spoke: dict[str, None]) -> None:
        """Confirm the claims of runs whose runners spoke (before a later claim of one of
        them is recorded, which a runner must confirm anew), but for those confirmed
        already."""
        todo = [run_id for run_id in spoke if run_id not in self._confirmed]
        spoke.clear()
        if not todo:
            return
        readmodels.confirm_leases(cur, todo)
        if len(self._confirmed) + len(todo) > CONFIRMED_KEPT:
            self._confirmed.clear()  # a bound, not a loss: a forgotten run costs an update
        self._confirmed.update(todo)
