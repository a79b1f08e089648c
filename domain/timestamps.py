"""The one timestamp format of the wire and the store: RFC 3339, UTC, microseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

# Events of one command share one timestamp: both directions are memoised.


@lru_cache(maxsize=256)
def format_timestamp(value: datetime) -> str:
    """2026-11-23T12:00:00.123456Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@lru_cache(maxsize=256)
def parse_timestamp(value: str) -> datetime:
    """The inverse of format_timestamp (accepts any ISO 8601 text with an offset)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
