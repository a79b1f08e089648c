"""A run's snapshot (domain/runs/snapshot.py) keeps every attribute's type through the
store's JSON: datetimes and tuples come back as they were, wherever they are, and no value
a runner sent is mistaken for one of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import orjson
from hypothesis import given
from hypothesis import strategies as st

from adapters.store import OrjsonTranscoder
from domain.runs import Run
from domain.runs.snapshot import RunSnapshot

stamps = st.datetimes(
    min_value=datetime(2000, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=5))])
)
scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5) | stamps
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def a_run(**attributes: Any) -> Run:
    run = Run.submit(run_id=uuid4(), owner="alice", task="t", now=datetime.now(UTC))
    run.collect_events()
    run.__dict__.update(attributes)
    return run


def through_the_store(snapshot: RunSnapshot) -> RunSnapshot:
    """The snapshot as the store's transcoder gives it back (its state as plain JSON)."""
    transcoder = OrjsonTranscoder()
    state = transcoder.decode(transcoder.encode({"state": snapshot.state}))["state"]
    return RunSnapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )


@given(st.dictionaries(st.text(min_size=1, max_size=6).map(lambda k: "x_" + k), values, max_size=4))
def test_any_attributes_come_back_with_their_types(extra: dict[str, Any]) -> None:
    run = a_run(**extra)
    restored = through_the_store(RunSnapshot.take(run)).mutate(None)
    assert type(restored) is Run
    assert vars(restored) == vars(run)
    for key, value in extra.items():
        assert _types(getattr(restored, key)) == _types(value)


def test_a_runner_s_values_are_only_values() -> None:
    lookalike = {"datetimes": [["created_at"]], "tuples": [[]], "_type_": "datetime_iso"}
    run = a_run(open_gates=[{"gate_id": "g", "request": lookalike, "opened_at": run_now()}])
    restored = through_the_store(RunSnapshot.take(run)).mutate(None)
    assert restored.open_gates == run.open_gates
    assert restored.created_at == run.created_at


def test_a_value_json_cannot_keep_is_refused() -> None:
    for bad in ({1: "x"}, {"a": {1, 2}}, b"bytes"):
        try:
            RunSnapshot.take(a_run(extra=bad))
        except TypeError:
            continue
        raise AssertionError(f"{bad!r} was kept")


def test_the_snapshot_state_is_plain_json() -> None:
    snapshot = RunSnapshot.take(a_run(lease={"expires_at": run_now(), "pair": (1, 2)}))
    assert orjson.loads(orjson.dumps(snapshot.state)) == snapshot.state


def run_now() -> datetime:
    return datetime(2026, 12, 3, 16, 0, 0, 123456, tzinfo=UTC)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (type(value), [_types(v) for v in value])
    return type(value)
