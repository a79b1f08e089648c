"""Policies: processes that watch the read models and the clock, and issue commands.

Their commands are idempotent — keyed by the lease's fencing token, or by the run still
being `merging` — so a crash between deciding and acting, or two processes acting at
once, never expires a lease twice, schedules two retries or merges twice.
"""

from __future__ import annotations

import logging
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from uuid import UUID

from adapters import git, merges, readmodels
from adapters.db import Database
from api.service.engine import Engine
from domain.errors import DomainError
from domain.runs import MERGING, Run

log = logging.getLogger("runledger.policies")
MERGE_TRIES = 5


class LeaseExpiry:
    """Expires every lease that lapsed without a heartbeat, and gives back every claim its
    runner did not confirm in time (pending again, no attempt used)."""

    def __init__(self, db: Database, engine: Engine) -> None:
        self.db, self.engine = db, engine

    def tick(self) -> float | None:
        """Act on what is due; returns the seconds until the next lease can lapse or claim
        fall due."""
        now = time.time()
        with self.db.reading() as cur:
            unconfirmed = readmodels.unconfirmed_claims(cur, now)
            due = readmodels.expired_leases(cur, now)
            upcoming = readmodels.next_lease_deadline(cur)
        for run_id, token in unconfirmed:
            with suppress(DomainError):  # the run moved on (deleted, …): nothing to give back
                self.engine.abandon_claim(UUID(run_id), token, client_gone=False)
        for run_id, token in due:
            with suppress(DomainError):  # the run moved on (deleted, …): nothing to expire
                self.engine.expire_lease(UUID(run_id), token)
        if due or unconfirmed:
            return 0.05  # the leases view catches up, then look again
        return None if upcoming is None else max(upcoming - time.time(), 0.0) + 0.01


class Merger:
    """Merges approved runs into their originating branch, and tidies their worktrees."""

    def __init__(self, db: Database, engine: Engine) -> None:
        self.db, self.engine = db, engine
        self.busy: dict[UUID, int] = {}  # runs whose merge met a moving branch or a lock

    def tick(self) -> float | None:
        """Merge every run that is waiting in `merging` (one bad run never stops the rest)."""
        with self.db.reading() as cur:
            waiting = readmodels.runs_in_status(cur, MERGING)
        for run_id in waiting:
            try:
                self.merge(UUID(run_id))
            except Exception:
                log.exception("merging run %s failed; will try again", run_id)
        return 1.0 if self.busy else None

    def merge(self, run_id: UUID) -> None:
        """Merge one run if it is still merging, or finish the merge a crash interrupted;
        record the outcome as an event."""
        run = self.engine.get_run(run_id)
        if run.status != MERGING or run.repository_path is None:
            return
        try:
            with merges.locked(run.repository_path) as repo:
                outcome = self._merge_locked(repo, run_id)
        except (merges.GitBusy, subprocess.TimeoutExpired) as exc:
            tries = self.busy[run_id] = self.busy.get(run_id, 0) + 1
            if tries < MERGE_TRIES:
                log.info("run %s: merge postponed (%s)", run_id, exc)
                return  # still merging: the next tick tries again
            outcome = give_up(self.engine.get_run(run_id), f"git kept failing: {exc}")
        except (git.GitError, OSError, ValueError) as exc:
            outcome = give_up(self.engine.get_run(run_id), f"git failed: {exc}")
        self.busy.pop(run_id, None)
        if outcome is not None:
            self._record(run_id, outcome)

    def _merge_locked(self, repo: merges.Locked, run_id: UUID) -> merges.MergeOutcome | None:
        """The merge, with the run read afresh under the repository's lock (another
        process may have merged it, or started and recorded its merge, meanwhile)."""
        run = self.engine.get_run(run_id)
        if run.status != MERGING:
            return None
        started = merges.MergeStart(**run.merge_started) if run.merge_started else None

        def record(start: merges.MergeStart) -> None:
            self.engine.start_merge(
                run_id, start.target, start.old_commit, start.tip, start.merge_commit
            )

        try:
            return merges.merge(
                repo, run.branch_name, run.target_branch, run.tree_hash, started, record
            )
        except DomainError:
            return None  # the run stopped merging before anything moved

    def _record(self, run_id: UUID, outcome: merges.MergeOutcome) -> None:
        try:
            if outcome.refused:
                self.engine.refuse_merge(run_id, outcome.refused)
            elif outcome.commit:
                self.engine.complete_merge(run_id, f"merged:{outcome.commit}")
                remove_worktree(self.engine.get_run(run_id))
            elif outcome.conflicting_files:
                self.engine.fail_merge(
                    run_id, "The branch conflicts with its target.", list(outcome.conflicting_files)
                )
            else:
                self.engine.fail_merge(run_id, outcome.failed or "The merge failed.", [])
        except DomainError:
            pass  # another process recorded the outcome first


def give_up(run: Run, reason: str) -> merges.MergeOutcome:
    """The outcome of a merge git keeps failing: merged if its recorded start was
    published after all (only the checkout lags), failed otherwise."""
    started = run.merge_started
    if started and run.repository_path and merges.published(run.repository_path, started):
        return merges.MergeOutcome(commit=started["merge_commit"])
    return merges.MergeOutcome(failed=reason)


def remove_worktree(run: Run) -> None:
    """Remove the run's worktree (the reference runner's), keeping its branch for audit."""
    if run.repository_path is None or not Path(run.repository_path).exists():
        return
    branch = f"refs/heads/{run.branch_name}"
    try:
        listing = git.git(run.repository_path, "worktree", "list", "--porcelain")
    except git.GitError:
        return
    for path, head in git.worktree_branches(listing):
        if head == branch and Path(path) != Path(run.repository_path):
            git.remove_worktree(run.repository_path, path)


class ProjectCleanup:
    """Cancels the active runs of deleted projects — also runs submitted as the project was
    being deleted, and whatever a crash left behind (it sweeps; it does not count on one
    wake-up)."""

    def __init__(self, db: Database, engine: Engine) -> None:
        self.db, self.engine = db, engine

    def tick(self) -> float | None:
        """Cancel what is due."""
        with self.db.reading() as cur:
            orphans = readmodels.runs_of_missing_projects(cur)
        for run_id, project_id in orphans:
            try:
                project = self.engine.get_project(UUID(project_id))
            except DomainError:
                continue
            if not project.deleted:
                continue  # the projects view is merely behind
            with suppress(DomainError):  # it ended meanwhile
                self.engine.cancel_run(UUID(run_id), project.owner, reason="project deleted")
        return None
