"""What every event of runledger shares: a wire name, a topic from it, its facts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

E = TypeVar("E")


class WireNamed:
    """Mixin for event classes: `TYPE` is the dotted wire name, never renamed once stored;
    the stored topic is `runledger:<TYPE>` unless a class sets `TOPIC` itself. Topics do not
    depend on module or class names, so moving code never orphans a stored event.

    What an event means to the rest of the engine is declared here too, once per class
    (domain/topics.py gathers them into the sets the API and the policies use)."""

    TYPE = ""
    TOPIC: ClassVar[str]  # set below from TYPE, or by the class itself
    MAKES_CLAIMABLE: ClassVar[bool] = False  # a runner may claim the run after it
    ENDS_RUN: ClassVar[bool] = False  # the run's last status change: streams end on it
    KEEPS_LEASE: ClassVar[bool] = False  # the run's lease is as it was before the event
    WAKES: ClassVar[tuple[str, ...]] = ()  # the policies (by loop name) that act on it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE and "TOPIC" not in cls.__dict__:
            cls.TOPIC = f"runledger:{cls.TYPE}"

    def wire_type(self) -> str:
        """The event's dotted name on the wire (`run.submitted`)."""
        return self.TYPE


def make_event(
    cls: type[E], originator_id: UUID, originator_version: int, timestamp: datetime, **fields: Any
) -> E:
    """An event object from its fields, as the library's mapper makes one from a stored
    state: without the frozen dataclass's `__init__`, which costs more than everything
    else an event does (runner output makes hundreds per request)."""
    event = object.__new__(cls)
    object.__setattr__(
        event,
        "__dict__",
        {
            "originator_id": originator_id,
            "originator_version": originator_version,
            "timestamp": timestamp,
            **fields,
        },
    )
    return event
