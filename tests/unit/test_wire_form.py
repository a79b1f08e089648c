"""One reading of stored events: clients, projections and the domain see each event alike,
at its class's current version, also when an older version of the class stored it."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import orjson
from eventsourcing.persistence import StoredEvent

from adapters.db import StoredRow
from adapters.store import LeanMapper, OrjsonTranscoder
from adapters.stored import current_state
from api.envelopes import Envelope
from domain.projects import Project
from domain.runs import Run
from projections.folding import Folder
from tests.unit.helpers import RUNNER, claim, submit
from tests.unit.test_stored_form import every_kind_of_event

MAPPER = LeanMapper(transcoder=OrjsonTranscoder())
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# What a build before `run.claimed` v2 stored: no `runner` (the instance was the runner),
# no `class_version`.
V1_CLAIM: dict[str, Any] = {
    "timestamp": "2024-05-01T12:00:00.000000Z",
    "actor": RUNNER,
    "runner_id": RUNNER,
    "lease_id": "lease-1",
    "fencing_token": 1,
    "lease_expires_at": "2024-05-01T12:00:30.000000Z",
}
V1_DATA = {k: v for k, v in V1_CLAIM.items() if k not in ("timestamp", "actor")}


def row_of(stored: Any, position: int) -> StoredRow:
    """A stored event as the log hands it out."""
    return StoredRow(
        position, stored.originator_id, stored.originator_version, stored.topic, stored.state
    )


def run_claimed_by_a_version_1_claim() -> list[StoredRow]:
    """A submitted run's stored row, then a version-1 `run.claimed`."""
    (submitted,) = submit().collect_events()
    first = row_of(MAPPER.to_stored_event(submitted), 1)
    v1 = StoredRow(2, first.run_id, 2, Run.Claimed.TOPIC, orjson.dumps(V1_CLAIM))
    return [first, v1]


def as_read_by_the_repository(row: StoredRow) -> StoredEvent:
    """A row as the repository may get it from a recorder: the id as text."""
    return StoredEvent(str(row.run_id), row.sequence, row.topic, row.state)


def domain_fields(event: Any) -> dict[str, Any]:
    """A domain event's own fields: what its envelope's data should hold."""
    base = {"originator_id", "originator_version", "timestamp", "actor", "originator_topic"}
    return {k: v for k, v in vars(event).items() if k not in base}


def test_a_version_1_claim_reads_as_the_current_version() -> None:
    state = current_state(Run.Claimed.TOPIC, orjson.dumps(V1_CLAIM))

    assert state == {**V1_CLAIM, "runner": RUNNER, "confirm_by": None}


def test_a_version_2_claim_reads_with_no_confirm_time() -> None:
    v2 = {**V1_CLAIM, "runner": "runner-key", "class_version": 2}

    state = current_state(Run.Claimed.TOPIC, orjson.dumps(v2))

    assert state == {**V1_CLAIM, "runner": "runner-key", "confirm_by": None}


def test_a_current_claim_reads_without_its_stored_class_version() -> None:
    run = submit()
    claim(run)
    stored = MAPPER.to_stored_event(run.collect_events()[-1])
    assert orjson.loads(stored.state)["class_version"] == 3

    assert "class_version" not in current_state(stored.topic, stored.state)


def test_the_envelope_of_a_version_1_claim_carries_the_current_versions_data() -> None:
    claimed = run_claimed_by_a_version_1_claim()[1]

    envelope = Envelope.from_row(claimed)

    current = {**V1_DATA, "runner": RUNNER, "confirm_by": None}
    assert (envelope.type, envelope.data) == ("run.claimed", current)


def test_the_mapper_reads_a_version_1_claim_as_the_current_version() -> None:
    claimed = run_claimed_by_a_version_1_claim()[1]

    event = MAPPER.to_domain_event(as_read_by_the_repository(claimed))

    assert domain_fields(event) == {**V1_DATA, "runner": RUNNER, "confirm_by": None}
    assert (event.originator_id, event.originator_version) == (claimed.run_id, 2)


def test_the_folded_run_of_a_version_1_claim_holds_the_runners_lease() -> None:
    rows = run_claimed_by_a_version_1_claim()
    folder = Folder(SimpleNamespace(mapper=MAPPER, repository=None))  # type: ignore[arg-type]

    run = folder.fold(rows)[rows[0].run_id]

    assert run.lease["runner"] == RUNNER and run.lease["lease_id"] == "lease-1"
    assert run.lease["confirmed"]  # a claim from before confirmation needs none


def test_every_kind_of_event_shows_clients_the_fields_the_domain_reads() -> None:
    for position, event in enumerate(every_kind_of_event(), start=1):
        stored = MAPPER.to_stored_event(event)

        envelope = Envelope.from_row(row_of(stored, position))
        fields = domain_fields(MAPPER.to_domain_event(stored))

        if isinstance(event, Run.OutputRecorded):
            assert (envelope.type, envelope.data) == (fields["kind"], fields["data"])
        else:
            assert envelope.data == fields, envelope.type


def test_a_version_2_submission_reads_as_a_run_of_no_board_task() -> None:
    (submitted,) = submit().collect_events()
    state = orjson.loads(MAPPER.to_stored_event(submitted).state)
    del state["task_id"]
    state["class_version"] = 2
    row = StoredRow(1, submitted.originator_id, 1, Run.Submitted.TOPIC, orjson.dumps(state))

    assert current_state(row.topic, row.state)["task_id"] is None
    assert MAPPER.to_domain_event(as_read_by_the_repository(row)).task_id is None
    assert Folder(SimpleNamespace(mapper=MAPPER)).advance(row).task_id is None  # type: ignore[arg-type]


def test_a_version_1_task_start_reads_as_a_start_retried_from_nothing() -> None:
    project = Project.create(
        project_id=uuid4(),
        owner="alice",
        name="p",
        repository_path=None,
        default_branch="m",
        now=NOW,
    )
    project.create_task(task_id="a", title="a", description="", actor="alice", now=NOW)
    project.move_task(task_id="a", column="ready", run_status=None, actor="alice", now=NOW)
    project.start_task(task_id="a", run_status=None, actor="alice", now=NOW)
    started = project.collect_events()[-1]
    state = orjson.loads(MAPPER.to_stored_event(started).state)
    assert state.pop("class_version") == 2 and state.pop("retried_from") is None
    row = StoredRow(4, project.id, 4, Project.TaskStarted.TOPIC, orjson.dumps(state))

    assert current_state(row.topic, row.state)["retried_from"] is None
    assert MAPPER.to_domain_event(as_read_by_the_repository(row)).retried_from is None
    assert Envelope.from_row(row).data["retried_from"] is None
