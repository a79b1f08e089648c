"""The wire's one timestamp format (domain/timestamps.py): RFC 3339, UTC, microseconds,
whatever the offset the time was given in; and read back to the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from domain.timestamps import format_timestamp, parse_timestamp

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets | st.just(UTC)
)


@given(instants)
def test_a_timestamp_is_the_utc_instant_in_rfc_3339_with_microseconds(value: datetime) -> None:
    text = format_timestamp.__wrapped__(value)  # past the memo, every value computed
    v = value.astimezone(UTC)
    assert text == (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        f".{v.microsecond:06d}Z"
    )
    assert parse_timestamp.__wrapped__(text) == value
