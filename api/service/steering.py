"""Steering use cases: find a directive's targets, record it on each and on the run it was
sent to, and describe it in the answer (also when the answer is rebuilt after a crash)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from api.service.engine import Appended, Engine
from domain.errors import Conflict, NotFound
from domain.plans import DISPATCHED
from domain.runs import Run

if TYPE_CHECKING:
    from api.service.bootstrap import Services


def steering_targets(services: Services, run: Run, owner: str, child: UUID | None) -> list[Run]:
    """The runs a directive sent to `run` acts on: the named child run (NotFound unless it
    is the owner's and `run` is its parent); else a coordinator's active children (Conflict
    when it has none); else the run itself."""
    engine = services.engine
    if child is None and run.is_coordinator:
        ids = [run.subtasks[key]["child_run_id"] for key in run.subtasks_in(DISPATCHED)]
        children = [c for c in _existing(engine, ids) if not c.is_terminal]
        if not children:
            raise Conflict("The coordinator has no active child to steer.", run.status)
        return children
    if child is None:
        return [run]
    target = engine.get_run(child, owner)
    if target.parent_run_id != str(run.id):
        raise NotFound("No such child run.")
    return [target]


def _existing(engine: Engine, run_ids: list[str]) -> list[Run]:
    """The runs of these ids that exist (a dispatched child may not be created yet)."""
    found = []
    for run_id in run_ids:
        try:
            found.append(engine.get_run(UUID(run_id)))
        except NotFound:
            continue
    return found


def steer(
    services: Services,
    run_id: UUID,
    owner: str,
    *,
    kind: str,
    instruction: str,
    target_child_run_id: UUID | None = None,
) -> Appended:
    """Send a directive to a run: recorded on each active target (where `stop` cancels), then
    on the run it was sent to. Conflict when no target is active."""
    engine = services.engine
    run = engine.get_run(run_id, owner)
    targets = steering_targets(services, run, owner, target_child_run_id)
    active = [t for t in targets if not t.is_terminal]
    if not active:
        raise Conflict("No target of the directive is active.", targets[0].status)
    directive: dict[str, Any] = {
        "directive_id": str(engine.new_id()),
        "kind": kind,
        "instruction": instruction,
        "targets": [str(t.id) for t in targets],
    }
    last: Appended | None = None
    for target in active:
        if target.id != run.id:
            last = engine.steer_run(target.id, owner, **directive)
    sent_to = engine.steer_run(run_id, owner, **directive)
    # A run that ended records nothing when it only passes the directive on: answer with
    # the target's record then.
    return sent_to if sent_to.position is not None or last is None else last


def directive_answer(services: Services, appended: Appended) -> dict[str, Any]:
    """The directive a steer command recorded, read from the run as the command left it (so
    a retry answered after a crash describes it too)."""
    run = services.engine.get_run(appended.run_id, version=appended.sequence)
    directive = run.directives[-1]
    return {
        "directive_id": directive["directive_id"],
        "kind": directive["kind"],
        "targets": directive["targets"],
        "status": "pending",
    }
