"""The engine's commands on gates and steering, and the heartbeat that carries their news.

Mixed into the Engine (api/service/engine.py) like run_commands.py: each method loads the
run, lets the aggregate decide (domain/runs/gates.py, steering.py), and saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from api.service.engine_parts import EngineParts
from api.service.results import Appended
from domain.timestamps import format_timestamp


@dataclass(frozen=True)
class Heartbeat:
    """A renewed lease, and what its runner has yet to act on: resolved gates it has not
    acknowledged, redirects and amendments it has not applied."""

    appended: Appended
    expires_at: datetime
    gates: list[dict[str, Any]]
    directives: list[dict[str, Any]]


class GateEngineCommands(EngineParts):
    """Resolve a gate, toggle auto-approval, steer a run; renew a lease with its news."""

    def resolve_gate(
        self,
        run_id: UUID,
        user: str,
        gate_id: str,
        *,
        decision: str,
        answer: str | None = None,
        scope: str = "once",
    ) -> Appended:
        """Resolve one of the run's open gates (Conflict unless it is open)."""
        return self._update(
            run_id,
            user,
            lambda run, now: run.resolve_gate(
                gate_id=gate_id, decision=decision, answer=answer, scope=scope, actor=user, now=now
            ),
        )

    def set_auto_approve(self, run_id: UUID, user: str, *, enabled: bool) -> Appended:
        """Turn the run's `auto_approve_tools` on or off (a repeat appends nothing)."""
        return self._update(
            run_id,
            user,
            lambda run, now: run.set_auto_approve(enabled=enabled, actor=user, now=now),
        )

    def steer_run(
        self,
        run_id: UUID,
        user: str,
        *,
        directive_id: str,
        kind: str,
        instruction: str,
        targets: list[str],
    ) -> Appended:
        """Record a directive on a run: acted on when the run is one of its targets."""
        return self._update(
            run_id,
            user,
            lambda run, now: run.steer(
                directive_id=directive_id,
                kind=kind,
                instruction=instruction,
                targets=targets,
                actor=user,
                now=now,
            ),
        )

    def heartbeat(self, run_id: UUID, lease_id: str, runner: str) -> Heartbeat:
        """Extend a runner's own lease from now, delivering its pending directives."""
        expires = self.clock() + timedelta(seconds=self.lease_seconds)
        run, appended = self._update_run(
            run_id,
            None,
            lambda run, now: run.renew_lease(
                lease_id=lease_id,
                lease_expires_at=format_timestamp(expires),
                runner=runner,
                now=now,
            ),
        )
        return Heartbeat(appended, expires, run.unacknowledged_gates(), run.unapplied_directives())
