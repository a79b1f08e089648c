"""The log writer's handed-over rows (LogWriter.offer) on both stores: rows that follow on
from the log's head are appended as they were handed over, without reading the events
again; rows after a gap, rows already appended, or too few are made up from the store, so
the log is the same tree either way."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import merkle, merkle_log
from adapters.audit_writer import LogWriter
from api.service import runtime as runtime_module
from api.service.runtime import Runtime
from tests.support import open_runtime


@pytest.fixture
def rt(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime (not leading: the test drives its writer) on a fresh store."""
    runtime = open_runtime(store_url, tmp_path)
    yield runtime
    runtime.close()


def writer(rt: Runtime, batch: int = 500) -> LogWriter:
    return LogWriter(rt.db, rt.signer, every_events=1000, every_seconds=60.0, batch=batch)


def submit(rt: Runtime, n: int) -> None:
    for i in range(n):
        rt.engine.submit_run("alice", f"task {i}")


def log_entries(rt: Runtime) -> list[bytes]:
    with rt.db.reading() as cur:
        return merkle_log.entries(cur, 0, merkle_log.size(cur)) if merkle_log.size(cur) else []


def event_hashes(rt: Runtime) -> list[bytes]:
    return [row.hash for row in rt.db.events_after(0, 10_000) if row.hash is not None]


def test_rows_that_follow_on_are_appended_as_handed_over(rt: Runtime) -> None:
    submit(rt, 6)
    rows = rt.db.events_after(0, 100)
    log = writer(rt)
    # A stand-in hash for the third event: only a writer that took the handed-over rows
    # (and did not read the events again) has it in its log.
    marked = rows[2]._replace(hash=b"\x07" * 32)
    log.offer(0, [*rows[:2], marked])
    log.offer(rows[2].position, rows[3:])
    assert log.step() == 6
    assert log_entries(rt) == [r.hash for r in [*rows[:2], marked, *rows[3:]]]


def test_a_gap_before_the_rows_handed_over_is_read_from_the_store(rt: Runtime) -> None:
    submit(rt, 9)
    rows = rt.db.events_after(0, 100)
    log = writer(rt, batch=4)
    log.offer(rows[4].position, [r._replace(hash=b"\x07" * 32) for r in rows[5:]])
    log.offer(rows[0].position, rows[1:3])  # after leaves the log does not have yet
    assert log.catch_up() == 9
    hashes = event_hashes(rt)
    assert log_entries(rt) == hashes
    with rt.db.reading() as cur:
        assert merkle_log.root(cur, 9) == merkle.mth(hashes)


def test_rows_handed_over_twice_or_late_are_appended_once(rt: Runtime) -> None:
    submit(rt, 5)
    rows = rt.db.events_after(0, 100)
    log = writer(rt, batch=3)
    log.offer(0, rows[:3])
    log.offer(0, rows[:4])  # overlapping: the writer takes each event once
    assert log.step() == 3
    assert log.step() == 1
    log.offer(0, rows)  # late: all but the last are in the log already
    assert log.step() == 1
    assert log.step() == 0
    assert log_entries(rt) == event_hashes(rt)


def test_an_unhashed_row_handed_over_waits_for_the_store(rt: Runtime) -> None:
    submit(rt, 3)
    rows = rt.db.events_after(0, 100)
    log = writer(rt)
    log.offer(0, [rows[0], rows[1]._replace(hash=None), rows[2]])
    assert log.step() == 1  # the handed-over rows up to the unhashed one
    assert log.step() == 2  # then from the store, which has its hash
    assert log_entries(rt) == event_hashes(rt)


def test_a_tick_ends_with_the_rows_handed_over_and_catch_up_reads_on(rt: Runtime) -> None:
    submit(rt, 5)
    rows = rt.db.events_after(0, 100)
    log = writer(rt)
    log.offer(0, rows[:3])
    log.tick()  # one transaction: the handed-over rows, no second look at the store
    with rt.db.reading() as cur:
        assert merkle_log.size(cur) == 3
    assert log.catch_up() == 5  # up to the head, from the store
    assert log_entries(rt) == event_hashes(rt)


def test_a_tick_before_the_settle_leaves_a_part_batch_for_after_it(rt: Runtime) -> None:
    submit(rt, 5)
    rows = rt.db.events_after(0, 100)
    clock = [100.0]
    log = LogWriter(
        rt.db,
        rt.signer,
        every_events=1000,
        every_seconds=60.0,
        batch=3,
        settle=1.0,
        clock=lambda: clock[0],
    )
    log.tick()  # settled, with nothing handed over: it reads the store (all 5 events)
    submit(rt, 4)
    more = rt.db.events_after(rows[-1].position, 100)
    log.offer(rows[-1].position, more)
    clock[0] += 0.25
    wait = log.tick()  # early: one whole batch of 3, the 4th left waiting
    with rt.db.reading() as cur:
        assert merkle_log.size(cur) == 8
    assert wait == pytest.approx(0.75)  # back when the settle has run its course
    clock[0] += 0.75
    log.tick()
    with rt.db.reading() as cur:
        assert merkle_log.size(cur) == 9
    assert log_entries(rt) == event_hashes(rt)


def test_a_whole_batch_applied_hurries_the_leaders_log_past_its_settle(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unhurried, the log would append once a minute (its settle; its poll is longer still).
    # The projections poll the store as usual: this runtime has no change feed.
    monkeypatch.setattr(runtime_module, "POLL", 120.0)
    runtime = open_runtime(store_url, tmp_path)
    runtime.audit_log.settle = 60.0
    runtime.audit_log.batch = 5
    try:
        runtime.start()
        deadline = time.monotonic() + 30
        while not runtime.leading and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.leading
        with runtime.db.reading() as cur:
            before = merkle_log.size(cur)
        submit(runtime, 3)
        time.sleep(0.5)
        with runtime.db.reading() as cur:
            assert merkle_log.size(cur) == before  # a part batch waits for the settle
        submit(runtime, 3)  # now a whole one: appended at once, the rest left waiting
        size = before
        while size < before + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
            with runtime.db.reading() as cur:
                size = merkle_log.size(cur)
        assert size == before + 5
    finally:
        runtime.close()
