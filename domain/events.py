"""What every aggregate event of runledger shares: a wire name, and a stored topic from it."""

from __future__ import annotations

from typing import Any


class WireNamed:
    """Mixin for event classes: `TYPE` is the dotted wire name, never renamed once stored;
    the stored topic is `runledger:<TYPE>` unless a class sets `TOPIC` itself. Topics do not
    depend on module or class names, so moving code never orphans a stored event."""

    TYPE = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE and "TOPIC" not in cls.__dict__:
            cls.TOPIC = f"runledger:{cls.TYPE}"  # type: ignore[attr-defined]

    def wire_type(self) -> str:
        """The event's dotted name on the wire (`run.submitted`)."""
        return self.TYPE
