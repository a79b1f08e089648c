"""Which stored topic is which event, and what each event means to the rest of the engine:
the sets below are gathered from the facts declared on the event classes (domain/events.py
`WireNamed`), so a new event type is one class with its facts, and nothing else to edit."""

from __future__ import annotations

from domain.events import WireNamed
from domain.projects import Project
from domain.runs import Run


def event_classes(aggregate: type[Run] | type[Project]) -> list[type[WireNamed]]:
    """Every stored event class nested in an aggregate (the ones with a topic), once each
    (`Run.Created` is another name for `Run.Submitted`)."""
    found = {
        cls: None
        for cls in vars(aggregate).values()
        if isinstance(cls, type)
        and issubclass(cls, aggregate.Event)
        and getattr(cls, "TOPIC", None)
    }
    return list(found)


def event_types(aggregate: type[Run] | type[Project]) -> dict[str, str]:
    """Topic → wire type for every event class nested in an aggregate."""
    return {cls.TOPIC: cls.TYPE for cls in event_classes(aggregate)}


EVENT_CLASSES = [*event_classes(Run), *event_classes(Project)]
RUN_TYPES = event_types(Run)
PROJECT_TYPES = event_types(Project)
TYPES_BY_TOPIC = {**RUN_TYPES, **PROJECT_TYPES}
RUN_TOPICS = frozenset(RUN_TYPES)
PROJECT_TOPICS = frozenset(PROJECT_TYPES)
FIRST_TOPICS = frozenset({Run.Submitted.TOPIC, Project.Created.TOPIC})

# What the events mean, gathered from their classes' facts.
CLAIMABLE_TOPICS = frozenset(c.TOPIC for c in EVENT_CLASSES if c.MAKES_CLAIMABLE)
TERMINAL_TYPES = frozenset(c.TYPE for c in EVENT_CLASSES if c.ENDS_RUN)
LEASE_KEEPING_TOPICS = frozenset(c.TOPIC for c in EVENT_CLASSES if c.KEEPS_LEASE)
WAKING_TOPICS: dict[str, frozenset[str]] = {
    policy: frozenset(c.TOPIC for c in EVENT_CLASSES if policy in c.WAKES)
    for policy in sorted({policy for c in EVENT_CLASSES for policy in c.WAKES})
}
"""Policy (by its loop's name) → the topics that wake it."""
