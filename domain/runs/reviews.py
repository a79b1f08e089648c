"""A run's review and merge: a human decides, then the merger records the merge's steps.
Mixed into `Run` (domain/runs/aggregate.py).
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import Conflict, Invalid
from domain.runs.events import (
    Approved,
    ChangesRequested,
    Declined,
    MergeCompleted,
    MergeFailed,
    MergeRefused,
    MergeStarted,
)
from domain.runs.states import AWAITING_REVIEW, MERGING, RunState, decision_took_effect


class ReviewCommands(RunState):
    """The Run's commands after its runner reported changes: review, then merge."""

    def decide_review(
        self,
        *,
        approved: bool,
        request_changes: bool,
        comment: str | None,
        actor: str,
        now: datetime,
        subtasks: list[str] | None = None,
    ) -> None:
        """Approve (then merge), decline, or send back for changes; a repeat is a no-op.

        A coordinator sent back for changes re-opens `subtasks` (all when None) and their
        dependents."""
        decision = (
            "approved" if approved else "changes_requested" if request_changes else "declined"
        )
        if subtasks is not None and (decision != "changes_requested" or self.plan is None):
            raise Invalid("subtasks go only with changes requested of a coordinator.", "subtasks")
        if self.status != AWAITING_REVIEW:
            if decision_took_effect(self.review, self.status, decision):
                return
            raise Conflict("The run is not awaiting review.", self.status)
        if decision == "approved":
            self._trigger(Approved, now, actor, comment=comment)
            if self.repository_path is None:
                # Nothing to merge: the approval is the merge.
                self._trigger(MergeCompleted, now, actor, merge_result=None)
        elif decision == "declined":
            self._trigger(Declined, now, actor, comment=comment)
        else:
            self._trigger(ChangesRequested, now, actor, comment=comment)
            if self.plan is not None:
                self.reopen_subtasks(subtasks, comment, actor, now)

    def start_merge(
        self, *, target: str, old_commit: str, tip: str, merge_commit: str, now: datetime
    ) -> None:
        """Record the merge about to be published (a repeat of the latest is a no-op)."""
        self._require(MERGING, "The run is not merging.")
        started = {"target": target, "old_commit": old_commit, "tip": tip}
        if self.merge_started == {**started, "merge_commit": merge_commit}:
            return
        self._trigger(MergeStarted, now, "engine", **started, merge_commit=merge_commit)

    def complete_merge(self, *, merge_result: str, now: datetime) -> None:
        """Record the merge commit."""
        self._require(MERGING, "The run is not merging.")
        self._trigger(MergeCompleted, now, "engine", merge_result=merge_result)

    def fail_merge(self, *, reason: str, conflicting_files: list[str], now: datetime) -> None:
        """Record a merge that cannot succeed (conflicts, a changed branch)."""
        self._require(MERGING, "The run is not merging.")
        self._trigger(
            MergeFailed, now, "engine", reason=reason, conflicting_files=conflicting_files
        )

    def refuse_merge(self, *, reason: str, now: datetime) -> None:
        """Send the run back to review: the merge cannot start now (approve again later)."""
        self._require(MERGING, "The run is not merging.")
        self._trigger(MergeRefused, now, "engine", reason=reason)
