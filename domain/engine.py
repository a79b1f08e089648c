"""The engine: the one eventsourcing Application, one method per command (load, decide, save)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from domain.errors import Conflict, DomainError, NotFound
from domain.events import StoredRow
from domain.projects import Project
from domain.receipts import CURRENT_RECEIPT
from domain.runs import FAILED, MERGE_FAILED, Run
from domain.timestamps import format_timestamp

SAVE_ATTEMPTS = 20
RUN_LOCK_STRIPES = 256
A = TypeVar("A", Run, Project)


@dataclass(frozen=True)
class Appended:
    """What a command appended: the run, its status and last sequence, the global position."""

    run_id: UUID
    status: str
    sequence: int
    position: int | None  # None when the command appended nothing


@dataclass(frozen=True)
class Lease:
    """A runner's hold on a run: only its fencing token may report. `run` is the work it
    was given (Run.assignment, read-only): values, not the engine's cached run."""

    lease_id: str
    fencing_token: int
    expires_at: datetime
    run: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


class Engine(Application[UUID]):
    """Runs commands against aggregates; the clock and id source are injected."""

    name = "runledger"

    def __init__(
        self,
        env: dict[str, str],
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], UUID],
        lease_seconds: float = 30.0,
        retry_backoff: float = 2.0,
    ) -> None:
        super().__init__(env=env)
        self.clock = clock
        self.new_id = new_id
        self.lease_seconds = lease_seconds
        self.retry_backoff = retry_backoff
        self.followers: list[Callable[[list[StoredRow]], None]] = []
        # Commands on one run take turns in this process (no version-conflict storms), and
        # saves take turns too: the store serialises writers anyway, and a thread waiting
        # here holds no database lock while it waits for the interpreter.
        self._run_locks = [threading.Lock() for _ in range(RUN_LOCK_STRIPES)]
        self._save_lock = threading.Lock()

    # -- reads ----------------------------------------------------------------------------

    def get_run(self, run_id: UUID, user: str | None = None, version: int | None = None) -> Run:
        """The run as it stands (or stood after `version`); NotFound unless visible to user."""
        try:
            run = self.repository.get(run_id, version=version)
        except AggregateNotFoundError:
            raise NotFound("No such run.") from None
        if not isinstance(run, Run):
            raise NotFound("No such run.")
        if user is not None:
            # Visibility follows the run's latest state: a deleted run is gone at every version.
            latest = run if version is None else self.get_run(run_id)
            latest.check_visible_to(user)
        return run

    # -- user commands --------------------------------------------------------------------

    def submit_run(self, owner: str, task: str, **options: Any) -> Appended:
        """Submit a new run; it waits, pending, for a runner."""
        run = Run.submit(run_id=self.new_id(), owner=owner, task=task, now=self.clock(), **options)
        return self._save(run)

    def pause_run(self, run_id: UUID, user: str) -> Appended:
        """Pause a run in progress."""
        return self._update(run_id, user, lambda run, now: run.pause(actor=user, now=now))

    def resume_run(self, run_id: UUID, user: str) -> Appended:
        """Resume a paused run."""
        return self._update(run_id, user, lambda run, now: run.resume(actor=user, now=now))

    def cancel_run(self, run_id: UUID, user: str, reason: str | None = None) -> Appended:
        """Cancel a run that has not ended."""
        return self._update(
            run_id, user, lambda run, now: run.cancel(actor=user, now=now, reason=reason)
        )

    def review_run(
        self,
        run_id: UUID,
        user: str,
        *,
        approved: bool,
        request_changes: bool = False,
        comment: str | None = None,
    ) -> Appended:
        """Record a review decision (approve, decline or request changes)."""
        return self._update(
            run_id,
            user,
            lambda run, now: run.decide_review(
                approved=approved,
                request_changes=request_changes,
                comment=comment,
                actor=user,
                now=now,
            ),
        )

    def archive_run(self, run_id: UUID, user: str) -> Appended:
        """Hide a run from default listings."""
        return self._update(run_id, user, lambda run, now: run.archive(actor=user, now=now))

    def delete_run(self, run_id: UUID, user: str) -> Appended:
        """Delete a run from the read models; its events stay."""
        return self._update(run_id, user, lambda run, now: run.delete(actor=user, now=now))

    def retry_run(self, run_id: UUID, user: str) -> Appended:
        """Start a new run linked to a failed one; the source run is not changed."""
        source = self.get_run(run_id, user)
        if source.status not in (FAILED, MERGE_FAILED):
            raise Conflict("Only a failed run can be retried.", source.status)
        options = {
            "parent_run_id": source.parent_run_id,
            "retried_from": str(source.id),
            "originating_branch": source.originating_branch,
            "agent": source.agent,
            "model": source.model,
            "max_attempts": source.max_attempts,
            "auto_approve_tools": source.auto_approve_tools,
        }
        if source.project_id is None:
            return self.submit_run(source.owner, source.task, **options)
        try:  # in its project, which must still exist
            return self.submit_project_run(
                UUID(source.project_id), source.owner, source.task, **options
            )
        except NotFound:
            raise Conflict("The run's project was deleted.", source.status) from None

    # -- runner commands ------------------------------------------------------------------

    def claim_run(
        self, run_id: UUID, runner_id: str, runner: str | None = None
    ) -> tuple[Appended, Lease]:
        """Give a claimable run to a runner under a fresh lease (Conflict if another won).

        `runner` is who holds the lease (the runner key's name); `runner_id` the instance.
        """
        lease_id = str(self.new_id())
        now = self.clock()
        expires = now + timedelta(seconds=self.lease_seconds)
        run, appended = self._update_run(
            run_id,
            None,
            lambda run, now: run.claim(
                runner_id=runner_id,
                lease_id=lease_id,
                lease_expires_at=format_timestamp(expires),
                now=now,
                runner=runner,
            ),
        )
        work = MappingProxyType(run.assignment())
        return appended, Lease(lease_id, run.fencing_token, expires, work)

    def record_output(
        self, run_id: UUID, runner: str, fencing_token: int, events: list[tuple[str, dict]]
    ) -> Appended:
        """Append a batch of runner output events in one transaction."""
        filled = [
            (kind, {**data, "gate_id": str(self.new_id())})
            if kind == "gate.opened" and "gate_id" not in data
            else (kind, data)
            for kind, data in events
        ]
        return self._update(
            run_id,
            None,
            lambda run, now: run.record_output(
                fencing_token=fencing_token, events=filled, actor=runner, now=now
            ),
        )

    def report_outcome(
        self, run_id: UUID, runner: str, fencing_token: int, outcome: str, **details: Any
    ) -> Appended:
        """Record how the runner's attempt ended (a transient failure may schedule a retry)."""
        return self._update(
            run_id,
            None,
            lambda run, now: run.report(
                fencing_token=fencing_token,
                outcome=outcome,
                actor=runner,
                now=now,
                retry_backoff=self.retry_backoff,
                **details,
            ),
        )

    def renew_lease(self, run_id: UUID, lease_id: str, runner: str) -> tuple[Appended, datetime]:
        """Extend a runner's own lease by the lease duration from now."""
        expires = self.clock() + timedelta(seconds=self.lease_seconds)
        appended = self._update(
            run_id,
            None,
            lambda run, now: run.renew_lease(
                lease_id=lease_id,
                lease_expires_at=format_timestamp(expires),
                runner=runner,
                now=now,
            ),
        )
        return appended, expires

    def expire_lease(self, run_id: UUID, fencing_token: int) -> Appended:
        """Expire a lapsed lease (idempotent: a renewed, replaced or gone lease is left alone)."""
        return self._update(
            run_id,
            None,
            lambda run, now: run.expire_lease(
                fencing_token=fencing_token, now=now, retry_backoff=self.retry_backoff
            ),
        )

    def start_merge(
        self, run_id: UUID, target: str, old_commit: str, tip: str, merge_commit: str
    ) -> Appended:
        """Record the merge about to move `target` from `old_commit` to `merge_commit`."""
        return self._update(
            run_id,
            None,
            lambda run, now: run.start_merge(
                target=target, old_commit=old_commit, tip=tip, merge_commit=merge_commit, now=now
            ),
        )

    def complete_merge(self, run_id: UUID, merge_result: str) -> Appended:
        """Record a merge commit."""
        return self._update(
            run_id, None, lambda run, now: run.complete_merge(merge_result=merge_result, now=now)
        )

    def fail_merge(self, run_id: UUID, reason: str, conflicting_files: list[str]) -> Appended:
        """Record a merge that failed for good."""
        return self._update(
            run_id,
            None,
            lambda run, now: run.fail_merge(
                reason=reason, conflicting_files=conflicting_files, now=now
            ),
        )

    def refuse_merge(self, run_id: UUID, reason: str) -> Appended:
        """Send a run back to review because its merge cannot start now."""
        return self._update(run_id, None, lambda run, now: run.refuse_merge(reason=reason, now=now))

    # -- projects -------------------------------------------------------------------------

    def get_project(
        self, project_id: UUID, user: str | None = None, version: int | None = None
    ) -> Project:
        """The project (as it stood after `version`); NotFound unless it exists for `user`."""
        try:
            project = self.repository.get(project_id, version=version)
        except AggregateNotFoundError:
            raise NotFound("No such project.") from None
        if not isinstance(project, Project):
            raise NotFound("No such project.")
        if user is not None:
            project.check_visible_to(user)
        return project

    def create_project(
        self, owner: str, name: str, repository_path: str | None, default_branch: str
    ) -> tuple[Project, Appended]:
        """Create a project."""
        project = Project.create(
            project_id=self.new_id(),
            owner=owner,
            name=name,
            repository_path=repository_path,
            default_branch=default_branch,
            now=self.clock(),
        )
        return project, self._save(project)

    def update_project(
        self, project_id: UUID, user: str, changes: dict[str, Any]
    ) -> tuple[Project, Appended]:
        """Rename a project, change its default branch or settings."""
        return self._update_project(
            project_id, user, lambda p, now: p.update(changes=changes, actor=user, now=now)
        )

    def delete_project(self, project_id: UUID, user: str) -> int | None:
        """Delete a project; returns the deletion's position (its runs are cancelled after)."""
        _, appended = self._update_project(
            project_id, user, lambda p, now: p.delete(actor=user, now=now)
        )
        return appended.position

    def _update_project(
        self, project_id: UUID, user: str, decide: Callable[[Project, datetime], None]
    ) -> tuple[Project, Appended]:
        """Load, decide, save a project (always read from the store)."""
        too_fast = Conflict("The project is changing too fast; try again.", "active")
        load = partial(self.get_project, project_id, user)
        return self._load_decide_save(
            project_id, user, lambda: None, load, decide, lambda: too_fast
        )

    def submit_project_run(
        self, project_id: UUID, owner: str, task: str, **options: Any
    ) -> Appended:
        """Submit a run in a project: its repository, and its default branch unless given.

        A project deleted while the run was being saved gets the run cancelled at once
        (and NotFound): its deletion only cancels the runs it can already see.
        """
        project = self.get_project(project_id, owner)
        options.setdefault("originating_branch", None)
        options["originating_branch"] = options["originating_branch"] or project.default_branch
        appended = self.submit_run(
            owner,
            task,
            project_id=str(project.id),
            repository_path=project.repository_path,
            **options,
        )
        try:
            self.get_project(project_id, owner)
        except NotFound:
            self.cancel_run(appended.run_id, owner, reason="project deleted")
            raise
        return appended

    # -- plumbing -------------------------------------------------------------------------

    def _update(
        self, run_id: UUID, user: str | None, decide: Callable[[Run, datetime], None]
    ) -> Appended:
        """Load, decide, save a run, first on the run as this process last saw it."""
        return self._update_run(run_id, user, decide)[1]

    def _update_run(
        self, run_id: UUID, user: str | None, decide: Callable[[Run, datetime], None]
    ) -> tuple[Run, Appended]:
        """_update, and the run as the command left it (the cached copy: not to be changed
        or kept, since a later read may fast-forward it in place)."""
        seen, load = partial(self._cached_run, run_id), partial(self.get_run, run_id, user)

        def too_fast() -> Conflict:
            status = self.get_run(run_id).status
            return Conflict("The run is changing too fast; try again.", status)

        return self._load_decide_save(run_id, user, seen, load, decide, too_fast)

    def _load_decide_save(
        self,
        aggregate_id: UUID,
        user: str | None,
        seen: Callable[[], A | None],
        load: Callable[[], A],
        decide: Callable[[A, datetime], None],
        too_fast: Callable[[], Conflict],
    ) -> tuple[A, Appended]:
        """Load, decide, save; on a version conflict (another process) reload and decide again.

        Commands on one aggregate take turns in this process. The first decision is taken
        on the aggregate as this process last saw it (`seen`, when it has one) without
        asking the store: if it appends and the save succeeds, it was current (another
        process's event would have taken that sequence number). Any other outcome (a
        refusal, nothing to append, a conflict) is decided again on the aggregate read
        afresh (`load`), and a conflict then waits a little before the next try.
        """
        with self._run_locks[hash(aggregate_id) % RUN_LOCK_STRIPES]:
            aggregate = seen()
            for attempt in range(SAVE_ATTEMPTS):
                fresh = aggregate is None
                try:
                    if aggregate is None:
                        aggregate = load()
                    elif user is not None:
                        aggregate.check_visible_to(user)
                    decide(aggregate, self.clock())
                    if aggregate.pending_events or fresh:
                        return aggregate, self._save(aggregate)
                except DomainError:
                    if fresh:
                        raise
                except IntegrityError:
                    if fresh:
                        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                aggregate = None
        raise too_fast()

    def _cached_run(self, run_id: UUID) -> Run | None:
        """A copy of the run as this process last saw it, without reading the store."""
        cache = self.repository.cache
        if cache is None:
            return None
        try:
            run = cache.get(run_id)
        except KeyError:
            return None
        return deepcopy(run) if isinstance(run, Run) else None

    def _save(self, aggregate: Run | Project) -> Appended:
        """Store the aggregate's new events in one transaction and hand them, in commit
        order, to the followers; the library's save() minus what runledger does not use
        (snapshots, process events), which costs a few objects per event. Under an
        idempotent request's receipt, the same transaction records what was appended."""
        if isinstance(aggregate, Run):
            status = aggregate.status
        else:
            status = "deleted" if aggregate.deleted else "active"
        events = aggregate.collect_events()
        if not events:
            return Appended(aggregate.id, status, aggregate.version, None)
        stored = [self.mapper.to_stored_event(event) for event in events]
        receipt = CURRENT_RECEIPT.get()
        extra: dict[str, Any] = {}
        if receipt is not None:  # recorded with the events, in their transaction
            result = {"id": str(aggregate.id), "status": status, "sequence": aggregate.version}
            extra = {"receipt": receipt, "result": orjson.dumps(result).decode()}
        with self._save_lock:
            positions = self.recorder.insert_events(stored, **extra)
            assert positions is not None and len(positions) == len(stored)
            rows = [
                StoredRow(position, s.originator_id, s.originator_version, s.topic, s.state)
                for position, s in zip(positions, stored, strict=True)
            ]
            for follower in self.followers:  # still in commit order
                follower(rows)
        if self.repository.cache is not None:
            # With fast-forwarding on, the library leaves the cache at the version it last
            # read, so the next command would re-apply this one's events: keep the saved
            # state instead (the next read still fast-forwards past other processes' events).
            self.repository.cache.put(aggregate.id, aggregate)
        return Appended(aggregate.id, status, aggregate.version, positions[-1])

    def settle(self, timeout: float = 0.05) -> bool:
        """Wait (a little) until every save in flight in this process has reached the
        followers; False if one is still going (it may be waiting for a database lock)."""
        if not self._save_lock.acquire(timeout=timeout):
            return False
        self._save_lock.release()
        return True
