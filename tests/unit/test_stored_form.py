"""The stored form of events is forever: runledger's lean mapper writes exactly what the
library's mapper writes, for every kind of event, and reads back the same events."""

from __future__ import annotations

from eventsourcing.persistence import Mapper

from adapters.store import LeanMapper, OrjsonTranscoder
from domain.projects import Project
from tests.unit.helpers import NOW, OWNER, claim, output, report, review, submit


def every_kind_of_event() -> list[object]:
    """A run taken through output, gates, steering, review, changes, merge; a project created
    and updated."""
    run = submit(project_id="p", repository_path="/srv/repo", max_attempts=3)
    claim(run)
    gate = {"gate_id": "g", "kind": "tool_approval", "tool": "bash"}
    output(run, ("step.started", {}), ("gate.opened", gate))
    run.resolve_gate(
        gate_id="g", decision="approve", answer=None, scope="run", actor=OWNER, now=NOW
    )
    output(run, ("gate.opened", {**gate, "gate_id": "h"}), ("gate.acknowledged", {"gate_id": "g"}))
    run.set_auto_approve(enabled=True, actor=OWNER, now=NOW)
    run.steer(
        directive_id="d", kind="amend", instruction="i", targets=[str(run.id)], actor=OWNER, now=NOW
    )
    run.renew_lease(lease_id="lease-1", lease_expires_at="x", runner="runner-1", now=NOW)
    output(run, ("steering.applied", {"directive_id": "d"}))
    run.pause(actor=OWNER, now=NOW)
    run.resume(actor=OWNER, now=NOW)
    report(run, "changes", tree_hash="abcd", diff_stats={"files": 1, "added": 2, "removed": 0})
    review(run, "request_changes", comment="again")
    claim(run)
    report(run, "changes", tree_hash="abce", branch="runledger/x")
    review(run, "approve")
    run.complete_merge(merge_result="merged:abc", now=NOW)
    project = Project.create(
        project_id=run.id,
        owner=OWNER,
        name="p",
        repository_path=None,
        default_branch="main",
        now=NOW,
    )
    project.update(changes={"name": "q"}, actor=OWNER, now=NOW)
    return [*run.collect_events(), *project.collect_events()]


def test_the_lean_mapper_stores_and_reads_back_exactly_like_the_librarys() -> None:
    library = Mapper(transcoder=OrjsonTranscoder())
    lean = LeanMapper(transcoder=OrjsonTranscoder())

    for event in every_kind_of_event():
        stored = lean.to_stored_event(event)
        assert stored == library.to_stored_event(event), type(event).__name__
        assert vars(lean.to_domain_event(stored)) == vars(event)
