"""The coordination policy: moves every coordinator's work plan on.

The events that matter to a plan (a plan set, a subtask moved, a run ended or awaiting
review: their WAKES fact) are noted as they are projected, and wake it: it then looks only
at the coordinators those events name (themselves, or as their children's parent). On its
timer, and first after it takes the lead, it sweeps every moving plan, a page at a time,
which catches whatever a crash or a lost wake-up left. For each coordinator it approves
children awaiting review (with `auto_approve_children`),
lets the coordinator settle ended children and dispatch what became ready, creates the
child runs of dispatched subtasks that do not exist yet, and asks for the assembly review
once every subtask completed. Children of cancelled or deleted coordinators are cancelled.

Exactly once rests on the commands, not on this loop running once: a child's id derives
from (coordinator, subtask, round) so creating it again finds it there, and each command
on the coordinator changes nothing when repeated on the same facts. A crash anywhere, or
two processes sweeping together, at worst repeats a step that then does nothing.
"""

from __future__ import annotations

import logging
import threading
from contextlib import suppress
from uuid import UUID

from adapters import git, readmodels
from adapters.db import Database, StoredRow
from adapters.outage import is_unavailable
from api.service.engine import Engine
from domain.errors import DomainError, NotFound
from domain.plans import DISPATCHED
from domain.runs import AWAITING_REVIEW, CANCELLED, IN_PROGRESS, Run
from domain.runs.coordination import COORDINATOR_ACTOR
from domain.topics import WAKING_TOPICS

log = logging.getLogger("runledger.coordination")
RETRY_SECONDS = 2.0  # after a failure (git, a lost race): look again this soon
WAKING = WAKING_TOPICS["coordinator"]


class Coordination:
    """Moves coordinators' plans on; see the module's docstring."""

    def __init__(self, db: Database, engine: Engine) -> None:
        self.db, self.engine = db, engine
        self._noted: set[str] = set()  # runs named by projected events, not yet looked at
        self._lock = threading.Lock()
        self._swept = False  # a full sweep since this process took the lead

    def note(self, rows: list[StoredRow]) -> None:
        """Remember the runs these projected events name, if they matter to a plan."""
        named = {str(row.run_id) for row in rows if row.topic in WAKING}
        if named:
            with self._lock:
                self._noted |= named

    def forget(self) -> None:
        """Sweep everything at the next tick (after taking the lead)."""
        self._swept = False

    def tick(self) -> float | None:
        """Move on the plans the noted events name; with nothing noted (the timer, or the
        first tick after taking the lead), every moving plan (one bad coordinator never
        stops the rest)."""
        with self._lock:
            noted, self._noted = self._noted, set()
        if noted and self._swept:
            with self.db.reading() as cur:
                moving = readmodels.coordinators_of(cur, sorted(noted))
                orphans = readmodels.children_to_cancel(cur, sorted(noted))
            failed = self._advance_all(moving)
        else:
            self._swept = True
            failed = self._sweep()
            with self.db.reading() as cur:
                orphans = readmodels.children_to_cancel(cur)
        for child_id, owner in orphans:
            with suppress(DomainError):  # it ended meanwhile
                self.engine.cancel_run(
                    UUID(child_id), owner, reason="coordinator cancelled", actor=COORDINATOR_ACTOR
                )
        if failed:
            with self._lock:
                self._noted |= failed  # look again soon
            return RETRY_SECONDS
        return None

    def _sweep(self) -> set[str]:
        """Every moving plan, a page at a time; the ones that could not move on."""
        failed: set[str] = set()
        after = ""
        while True:
            with self.db.reading() as cur:
                page = readmodels.active_coordinators(cur, after)
            if not page:
                return failed
            failed |= self._advance_all(page)
            after = page[-1]

    def _advance_all(self, run_ids: list[str]) -> set[str]:
        failed = set()
        for run_id in run_ids:
            try:
                self.advance(UUID(run_id))
            except Exception as exc:
                if is_unavailable(exc):
                    raise  # the loop backs off until the database is back
                log.exception("coordinator %s: its plan could not move on now", run_id)
                failed.add(run_id)
        return failed

    def advance(self, run_id: UUID) -> None:
        """Move one coordinator's plan on as far as its children's statuses allow."""
        run = self.engine.get_run(run_id)
        if run.plan is None or run.status != IN_PROGRESS:
            return
        children = self.children(run)
        if run.auto_approve_children:
            self.approve_children(run, children)
        self.engine.advance_coordinator(run_id, children)
        run = self.engine.get_run(run_id)
        for key in run.subtasks_in(DISPATCHED):
            if run.subtasks[key]["child_run_id"] not in children:
                self.engine.submit_child(run, key)
        if run.ready_for_assembly:
            tree_hash, diff_stats = assembly_facts(run)
            self.engine.request_assembly(run_id, tree_hash, diff_stats)

    def children(self, run: Run) -> dict[str, str]:
        """The status of each dispatched subtask's child run that exists (from the runs
        view; from the store for one the view does not have yet, or any more)."""
        wanted = [run.subtasks[k]["child_run_id"] for k in run.subtasks_in(DISPATCHED)]
        with self.db.reading() as cur:
            found = readmodels.run_statuses(cur, wanted)
        for child_id in wanted:
            if child_id not in found:
                try:
                    child = self.engine.get_run(UUID(child_id))
                except NotFound:
                    continue  # not created yet
                found[child_id] = CANCELLED if child.deleted else child.status
        return found

    def approve_children(self, run: Run, children: dict[str, str]) -> None:
        """Approve the children awaiting review: the coordinator reviews its own children
        when the plan says so (their merges into the integration branch follow)."""
        for child_id, status in children.items():
            if status != AWAITING_REVIEW:
                continue
            with suppress(DomainError):  # reviewed or ended meanwhile
                appended = self.engine.review_run(
                    UUID(child_id), run.owner, approved=True, actor=COORDINATOR_ACTOR
                )
                children[child_id] = appended.status


def assembly_facts(run: Run) -> tuple[str | None, dict[str, int] | None]:
    """The integration branch's tree and what it changed since the originating branch
    (nothing without a repository)."""
    branch = run.integration_branch
    if run.repository_path is None or branch is None:
        return None, None
    repo = run.repository_path
    stats = git.diff_stats(repo, f"refs/heads/{run.target_branch}", f"refs/heads/{branch}")
    return git.tree_of(repo, f"refs/heads/{branch}"), stats
