"""Which stored topic is which event: the aggregates' explicit topics and their wire types."""

from __future__ import annotations

from domain.projects import Project
from domain.runs import Run


def event_types(aggregate: type[Run] | type[Project]) -> dict[str, str]:
    """Topic → wire type for every event class nested in an aggregate."""
    return {
        cls.TOPIC: cls.TYPE
        for cls in vars(aggregate).values()
        if isinstance(cls, type)
        and issubclass(cls, aggregate.Event)
        and getattr(cls, "TOPIC", None)
    }


RUN_TYPES = event_types(Run)
PROJECT_TYPES = event_types(Project)
TYPES_BY_TOPIC = {**RUN_TYPES, **PROJECT_TYPES}
RUN_TOPICS = frozenset(RUN_TYPES)
PROJECT_TOPICS = frozenset(PROJECT_TYPES)
FIRST_TOPICS = frozenset({Run.Submitted.TOPIC, Project.Created.TOPIC})
