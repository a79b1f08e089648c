"""The engine's coordinator commands: set a work plan, move it on, ask for the assembly
review, create a subtask's child run, re-open a subtask whose child is retried.

Mixed into the Engine (api/service/engine.py), like run_commands.py. The coordination
policy (api/service/coordination.py) calls them; none of them touches git or HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from api.service.engine_parts import EngineParts
from api.service.results import Appended
from domain.errors import Conflict
from domain.plans import child_run_id
from domain.runs import Run


class PlanCommands(EngineParts):
    """One method per command on a coordinator, and the creation of its children."""

    def set_work_plan(
        self,
        run_id: UUID,
        caller: str,
        *,
        subtasks: Sequence[Mapping[str, Any]],
        auto_approve_children: bool,
        integration_branch: str | None,
        fencing_token: int | None = None,
    ) -> Appended:
        """Give the run its work plan: the owner's (`fencing_token` None), or the planner
        runner's holding the run's lease."""
        user = caller if fencing_token is None else None
        return self._update(
            run_id,
            user,
            lambda run, now: run.set_plan(
                subtasks=subtasks,
                auto_approve_children=auto_approve_children,
                integration_branch=integration_branch,
                actor=caller,
                now=now,
                fencing_token=fencing_token,
            ),
        )

    def advance_coordinator(self, run_id: UUID, children: Mapping[str, str]) -> Appended:
        """Move the plan on from its children's statuses (child run id → status)."""
        child_id = partial(child_run_id, run_id)
        return self._update(
            run_id,
            None,
            lambda run, now: run.advance_plan(children=children, now=now, child_id=child_id),
        )

    def request_assembly(
        self, run_id: UUID, tree_hash: str | None, diff_stats: dict[str, int] | None
    ) -> Appended:
        """Every subtask completed: put the combined work up for review."""
        return self._update(
            run_id,
            None,
            lambda run, now: run.request_assembly(
                tree_hash=tree_hash, diff_stats=diff_stats, now=now
            ),
        )

    def submit_child(self, coordinator: Run, key: str) -> Appended | None:
        """Create the child run of a dispatched subtask under its recorded id; None when
        it exists already (another attempt, or another process, made it)."""
        subtask = coordinator.subtasks[key]
        task = subtask["task"]
        if subtask["scope"]:
            task = f"{task}\n\nScope: {subtask['scope']}"
        branch = coordinator.integration_branch or coordinator.originating_branch
        child = Run.submit(
            run_id=UUID(subtask["child_run_id"]),
            owner=coordinator.owner,
            task=task,
            now=self.clock(),
            project_id=coordinator.project_id,
            parent_run_id=str(coordinator.id),
            retried_from=subtask["retried_from"],
            repository_path=coordinator.repository_path,
            originating_branch=branch,
            agent=subtask["agent"] or coordinator.agent,
            model=subtask["model"] or coordinator.model,
            max_attempts=coordinator.max_attempts,
            auto_approve_tools=coordinator.auto_approve_tools,
            subtask_key=key,
            comment=subtask["comment"],
        )
        try:
            return self._save(child)
        except IntegrityError:
            return None

    def retry_child(self, source: Run, user: str) -> Appended:
        """Retry a coordinator's failed child: the coordinator's subtask takes a new child
        run (recorded first, so a crash before it exists leaves the policy to make it)."""
        key, parent = source.subtask_key, source.parent_run_id
        if key is None or parent is None:
            raise Conflict("The run is not a coordinator's child.", source.status)
        coordinator_id = UUID(parent)
        new_child = str(self.new_id())
        self._update(
            coordinator_id,
            user,
            lambda run, now: run.retry_subtask(
                key=key,
                failed_child=str(source.id),
                new_child=new_child,
                actor=user,
                now=now,
            ),
        )
        appended = self.submit_child(self.get_run(coordinator_id), key)
        if appended is None:  # the policy made it in the meantime
            child = self.get_run(UUID(new_child))
            appended = Appended(child.id, child.status, child.version, None)
        return appended
