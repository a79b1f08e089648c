"""The one timestamp format of the wire and the store: RFC 3339, UTC, microseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

# Events of one command share one timestamp: both directions are memoised.


@lru_cache(maxsize=256)
def format_timestamp(value: datetime) -> str:
    """2026-11-23T12:00:00.123456Z."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat, not strftime: a third cheaper, and its year always has four digits
    return value.isoformat(timespec="microseconds")[:26] + "Z"


@lru_cache(maxsize=256)
def parse_timestamp(value: str) -> datetime:
    """The inverse of format_timestamp (accepts any ISO 8601 text with an offset)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
