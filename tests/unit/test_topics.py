"""Stored topics are forever: this list only ever grows (add an upcaster, never rename)."""

from __future__ import annotations

from domain.topics import TYPES_BY_TOPIC

STORED_TOPICS = {
    "runledger:backlog.task_created": "backlog.task_created",
    "runledger:backlog.task_deleted": "backlog.task_deleted",
    "runledger:backlog.task_edited": "backlog.task_edited",
    "runledger:backlog.task_moved": "backlog.task_moved",
    "runledger:backlog.task_reordered": "backlog.task_reordered",
    "runledger:backlog.settings_changed": "backlog.settings_changed",
    "runledger:backlog.task_started": "backlog.task_started",
    "runledger:gate.resolved": "gate.resolved",
    "runledger:lease.expired": "lease.expired",
    "runledger:lease.renewed": "lease.renewed",
    "runledger:merge.completed": "merge.completed",
    "runledger:merge.failed": "merge.failed",
    "runledger:merge.refused": "merge.refused",
    "runledger:merge.started": "merge.started",
    "runledger:plan.set": "plan.set",
    "runledger:project.created": "project.created",
    "runledger:project.deleted": "project.deleted",
    "runledger:project.updated": "project.updated",
    "runledger:review.approved": "review.approved",
    "runledger:review.changes_requested": "review.changes_requested",
    "runledger:review.declined": "review.declined",
    "runledger:run.archived": "run.archived",
    "runledger:run.cancelled": "run.cancelled",
    "runledger:run.claimed": "run.claimed",
    "runledger:run.claim_abandoned": "run.claim_abandoned",
    "runledger:run.completed": "run.completed",
    "runledger:run.deleted": "run.deleted",
    "runledger:run.failed": "run.failed",
    "runledger:run.option_changed": "run.option_changed",
    "runledger:run.output": "",  # runner output: its wire type is the runner's `kind`
    "runledger:run.paused": "run.paused",
    "runledger:run.resumed": "run.resumed",
    "runledger:run.retry_scheduled": "run.retry_scheduled",
    "runledger:run.review_requested": "run.review_requested",
    "runledger:run.submitted": "run.submitted",
    "runledger:subtask.blocked": "subtask.blocked",
    "runledger:subtask.cancelled": "subtask.cancelled",
    "runledger:subtask.completed": "subtask.completed",
    "runledger:subtask.dispatched": "subtask.dispatched",
    "runledger:subtask.failed": "subtask.failed",
    "runledger:subtask.reopened": "subtask.reopened",
    "runledger:subtask.retried": "subtask.retried",
    "runledger:subtask.unblocked": "subtask.unblocked",
    "runledger:steering.delivered": "steering.delivered",
    "runledger:steering.directive": "steering.directive",
}


def test_every_stored_topic_still_resolves_to_the_same_event() -> None:
    for topic, wire_type in STORED_TOPICS.items():
        assert TYPES_BY_TOPIC.get(topic) == wire_type, topic


def test_every_event_class_has_a_topic_in_the_stored_list() -> None:
    assert set(TYPES_BY_TOPIC) == set(STORED_TOPICS)
