"""Steering a run while it runs: `stop` cancels it; `redirect` and `amend` wait for its
runner, which is handed them in its claim or its next heartbeat answer (`steering.delivered`,
once) and acknowledges them with `steering.applied` output. Mixed into `Run`
(domain/runs/aggregate.py) ahead of the attempt commands, whose `claim` and `renew_lease`
it extends to deliver the pending directives.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.errors import Conflict, Invalid
from domain.runs.gate_events import DirectiveDelivered, DirectiveIssued
from domain.runs.gate_rules import (
    DELIVERED,
    DIRECTIVE_KINDS,
    FOR_THE_RUNNER,
    MAX_ID,
    PENDING,
    STOP,
)
from domain.runs.states import MERGING, RunState


class SteeringCommands(RunState):
    """The Run's steering commands, and the directives its runner is still to apply."""

    def steer(
        self,
        *,
        directive_id: str,
        kind: str,
        instruction: str,
        targets: list[str],
        actor: str,
        now: datetime,
    ) -> None:
        """Record a directive on this run. On a target, act on it (Conflict once it has
        ended): `stop` cancels it, the others wait for its runner. On a run that only
        passes it on to its targets, record it while the run has not ended."""
        if kind not in DIRECTIVE_KINDS:
            raise Invalid(f"kind is one of {', '.join(DIRECTIVE_KINDS)}.", "kind")
        if not instruction.strip():
            raise Invalid("The instruction must not be empty.", "instruction")
        if not 1 <= len(directive_id) <= MAX_ID:
            raise Invalid("A directive needs an id.", "directive_id")
        if str(self.id) not in targets:
            if not self.is_terminal:
                fields = {"kind": kind, "instruction": instruction, "targets": list(targets)}
                self._trigger(DirectiveIssued, now, actor, directive_id=directive_id, **fields)
            return
        if self.is_terminal:
            raise Conflict("The run has ended; there is nothing to steer.", self.status)
        if kind == STOP and self.status == MERGING:
            raise Conflict("The run is being merged; it cannot be stopped now.", self.status)
        self._trigger(
            DirectiveIssued,
            now,
            actor,
            directive_id=directive_id,
            kind=kind,
            instruction=instruction,
            targets=list(targets),
        )
        if kind == STOP:
            self.cancel(actor=actor, now=now, reason=f"stopped: {instruction}")

    def claim(
        self,
        *,
        runner_id: str,
        lease_id: str,
        lease_expires_at: str,
        now: datetime,
        runner: str | None = None,
        confirm_by: str | None = None,
    ) -> None:
        """Claim the run (domain/runs/attempts.py), handing the runner its pending directives."""
        super().claim(  # type: ignore[misc]
            runner_id=runner_id,
            lease_id=lease_id,
            lease_expires_at=lease_expires_at,
            now=now,
            runner=runner,
            confirm_by=confirm_by,
        )
        self._deliver_directives(now)

    def renew_lease(
        self, *, lease_id: str, lease_expires_at: str, runner: str, now: datetime
    ) -> None:
        """Renew the lease (domain/runs/attempts.py); the heartbeat answer carries the pending
        directives, delivered from now on."""
        super().renew_lease(  # type: ignore[misc]
            lease_id=lease_id, lease_expires_at=lease_expires_at, runner=runner, now=now
        )
        self._deliver_directives(now)

    def unapplied_directives(self) -> list[dict[str, Any]]:
        """The redirects and amendments this run's runner has not applied yet."""
        return [
            {k: d[k] for k in ("directive_id", "kind", "instruction")}
            for d in self.directives
            if d["kind"] in FOR_THE_RUNNER and d["status"] in (PENDING, DELIVERED)
        ]

    def _deliver_directives(self, now: datetime) -> None:
        for directive in self.directives:
            if directive["kind"] in FOR_THE_RUNNER and directive["status"] == PENDING:
                self._trigger(
                    DirectiveDelivered, now, "engine", directive_id=directive["directive_id"]
                )
