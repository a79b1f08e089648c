"""The engine's run commands: load the run, let it decide, save what it appended.

Mixed into the Engine (api/service/engine.py), whose `_update` / `_update_run` / `_save`
do the loading and saving; each method here is one command of the Run aggregate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from uuid import UUID

from api.service.engine_parts import EngineParts
from api.service.results import Appended, Lease
from domain.errors import Conflict, NotFound
from domain.runs import FAILED, MERGE_FAILED, Run
from domain.timestamps import format_timestamp


class RunCommands(EngineParts):
    """One method per command on a run: the user's, the runner's, and the merger's."""

    if TYPE_CHECKING:  # given by the other command mixins

        def submit_project_run(
            self, project_id: UUID, owner: str, task: str, **options: Any
        ) -> Appended: ...

        def retry_child(self, source: Run, user: str) -> Appended: ...

        def retry_task_run(
            self, source: Run, user: str, options: dict[str, Any]
        ) -> Appended | None: ...

    # -- user commands --------------------------------------------------------------------

    def submit_run(
        self, owner: str, task: str, plan: Mapping[str, Any] | None = None, **options: Any
    ) -> Appended:
        """Submit a new run; it waits, pending, for a runner. With a `plan` ({run_id,
        subtasks, auto_approve_children, integration_branch}) it is a coordinator from its
        first command on, never claimable itself."""
        now = self.clock()
        run_id = self.new_id() if plan is None else plan["run_id"]
        run = Run.submit(run_id=run_id, owner=owner, task=task, now=now, **options)
        if plan is not None:
            run.set_plan(
                subtasks=plan["subtasks"],
                auto_approve_children=plan["auto_approve_children"],
                integration_branch=plan["integration_branch"],
                actor=owner,
                now=now,
            )
        return self._save(run)

    def pause_run(self, run_id: UUID, user: str) -> Appended:
        """Pause a run in progress."""
        return self._update(run_id, user, lambda run, now: run.pause(actor=user, now=now))

    def resume_run(self, run_id: UUID, user: str) -> Appended:
        """Resume a paused run."""
        return self._update(run_id, user, lambda run, now: run.resume(actor=user, now=now))

    def cancel_run(
        self, run_id: UUID, user: str, reason: str | None = None, actor: str | None = None
    ) -> Appended:
        """Cancel a run that has not ended (`actor`: who did, when not the user)."""
        return self._update(
            run_id, user, lambda run, now: run.cancel(actor=actor or user, now=now, reason=reason)
        )

    def review_run(
        self,
        run_id: UUID,
        user: str,
        *,
        approved: bool,
        request_changes: bool = False,
        comment: str | None = None,
        subtasks: list[str] | None = None,
        actor: str | None = None,
    ) -> Appended:
        """Record a review decision (approve, decline or request changes; a coordinator's
        request names the subtasks to redo). `actor`: who decided, when not the user."""
        return self._update(
            run_id,
            user,
            lambda run, now: run.decide_review(
                approved=approved,
                request_changes=request_changes,
                comment=comment,
                actor=actor or user,
                now=now,
                subtasks=subtasks,
            ),
        )

    def archive_run(self, run_id: UUID, user: str) -> Appended:
        """Hide a run from default listings."""
        return self._update(run_id, user, lambda run, now: run.archive(actor=user, now=now))

    def delete_run(self, run_id: UUID, user: str) -> Appended:
        """Delete a run from the read models; its events stay."""
        return self._update(run_id, user, lambda run, now: run.delete(actor=user, now=now))

    def retry_run(self, run_id: UUID, user: str) -> Appended:
        """Start a new run linked to a failed one; the source run is not changed. A board
        task's current run is retried as the task's next start, so the board follows it."""
        source = self.get_run(run_id, user)
        if source.status not in (FAILED, MERGE_FAILED):
            raise Conflict("Only a failed run can be retried.", source.status)
        if source.subtask_key is not None and source.parent_run_id is not None:
            return self.retry_child(source, user)
        options: dict[str, Any] = {
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
        try:  # in its project, which must still exist; on its board task's, if still its
            if source.task_id is not None:
                made = self.retry_task_run(source, source.owner, options)
                if made is not None:
                    return made
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
        confirm_by = now + timedelta(seconds=self.claim_confirm_seconds)
        run, appended = self._update_run(
            run_id,
            None,
            lambda run, now: run.claim(
                runner_id=runner_id,
                lease_id=lease_id,
                lease_expires_at=format_timestamp(expires),
                now=now,
                runner=runner,
                confirm_by=format_timestamp(confirm_by),
            ),
        )
        work = MappingProxyType(run.assignment())
        return appended, Lease(lease_id, run.fencing_token, expires, work)

    def record_output(
        self,
        run_id: UUID,
        runner: str,
        fencing_token: int,
        events: list[tuple[str, dict[str, Any]]],
    ) -> Appended:
        """Append a batch of runner output events in one transaction."""
        return self._update(run_id, None, self.output_decision(runner, fencing_token, events))

    def output_decision(
        self, runner: str, fencing_token: int, events: list[tuple[str, dict[str, Any]]]
    ) -> Callable[[Run, datetime], None]:
        """record_output's decision, to be taken on a run (the same however often)."""
        filled = [
            (kind, {**data, "gate_id": str(self.new_id())})
            if kind == "gate.opened" and "gate_id" not in data
            else (kind, data)
            for kind, data in events
        ]
        return lambda run, now: run.record_output(
            fencing_token=fencing_token, events=filled, actor=runner, now=now
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

    def abandon_claim(self, run_id: UUID, fencing_token: int, client_gone: bool) -> Appended:
        """Give back a claim its runner never confirmed: at once when its client is gone,
        else once its confirm time passed (idempotent: a confirmed, replaced or gone lease
        is left alone)."""
        return self._update(
            run_id,
            None,
            lambda run, now: run.abandon_claim(
                fencing_token=fencing_token, now=now, client_gone=client_gone
            ),
        )

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
