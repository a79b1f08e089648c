"""The change feed on both stores: every event once, in order, and the store read only when
something may be missing (the events this process commits are handed over, not re-read)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

import adapters.feed as feed_module
from adapters.db import StoredRow
from adapters.feed import ChangeFeed
from api.service.runtime import Runtime
from tests.integration.test_store import OWNER, RUNNER, all_events, claimed_run


class Following:
    """A started change feed on a runtime, recording what it delivers and its store reads."""

    def __init__(self, runtime: Runtime, poll_interval: float, settle: float) -> None:
        self.delivered: list[StoredRow] = []
        self.reads = 0
        self.read_positions: list[int] = []  # of every event a read returned
        db = runtime.db
        read = db.events_after

        def counted(position: int, limit: int = 500) -> list[StoredRow]:
            rows = read(position, limit)
            self.read_positions += [row.position for row in rows]
            self.reads += 1  # once it answered: a read still going may yet see later commits
            return rows

        db.events_after = counted  # type: ignore[method-assign]
        self.held = threading.Event()  # set: a delivery waits until `released` is set
        self.released = threading.Event()

        def deliver(rows: list[StoredRow]) -> None:
            if self.held.is_set():
                self.held.clear()
                self.released.wait(10)
            self.delivered.extend(rows)

        self.others = 0  # times it told that other processes append

        def others() -> None:
            self.others += 1

        self.feed = ChangeFeed(
            db,
            deliver,
            poll_interval=poll_interval,
            start_after=db.head(),
            settle=lambda: runtime.engine.settle(settle),
            others=others,
        )
        runtime.engine.followers.append(self.feed.offer)
        self.feed.start()

    def wait_for(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the feed did not deliver in time"
            time.sleep(0.01)

    def reaches(self, position: int) -> Callable[[], bool]:
        return lambda: bool(self.delivered) and self.delivered[-1].position >= position


@contextmanager
def following(
    runtime: Runtime, poll_interval: float = 60.0, settle: float = 0.05
) -> Iterator[Following]:
    """Follow `runtime`; with the default interval only hand-overs and NOTIFY wake the feed.

    `settle`: how long the feed waits for a save in flight here to hand its events over
    when a NOTIFY names them first (the server's 0.05 s by default)."""
    f = Following(runtime, poll_interval, settle)
    try:
        f.wait_for(lambda: f.reads >= 1)  # it looks once at the start
        yield f
    finally:
        f.feed.stop()


class Broken(Exception):
    """A read of the store that failed."""


def other_processes_poll(store_url: str) -> float:
    """On PostgreSQL NOTIFY brings other processes' commits; SQLite has none: the timer."""
    return 60.0 if "postgres" in store_url else 0.05


class FeedContract:
    def test_own_commits_are_delivered_in_order_without_reading_the_store(
        self, runtime: Runtime
    ) -> None:
        # A NOTIFY can beat the hand-over of its own commit; on a loaded machine the saving
        # thread may then take longer than the server's 50 ms to hand it over, and the feed
        # reads the store (correct, and what it should do). Given the time, it never needs to.
        with following(runtime, settle=5.0) as f:
            reads = f.reads
            run_id, token = claimed_run(runtime.engine)
            for batch in range(20):
                runtime.engine.record_output(run_id, RUNNER, token, [("log", {"b": batch})] * 5)

            f.wait_for(f.reaches(runtime.db.head()))
            time.sleep(0.1)  # any NOTIFY still on its way

            assert f.reads == reads
            assert f.delivered == all_events(runtime.db)
            assert f.others == 0  # this process appends alone

    def test_commits_of_another_process_arrive_in_order_exactly_once(
        self, runtime: Runtime, second_runtime: Runtime, store_url: str
    ) -> None:
        with following(runtime, other_processes_poll(store_url)) as f:
            run_id, token = claimed_run(runtime.engine)
            for batch in range(10):
                engine = (runtime.engine, second_runtime.engine)[batch % 2]
                engine.record_output(run_id, RUNNER, token, [("log", {"b": batch})] * 3)
            second_runtime.engine.submit_run(OWNER, "another")

            f.wait_for(f.reaches(runtime.db.head()))

            assert f.delivered == all_events(runtime.db)

    def test_between_its_own_commits_it_reads_only_the_other_processes_events(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        # (settle: a NOTIFY that beats its commit's hand-over would make the feed read)
        with following(runtime, settle=5.0) as f:
            run_id, token = claimed_run(runtime.engine)
            f.wait_for(f.reaches(runtime.db.head()))
            f.held.set()  # the next delivery waits, while both processes commit
            runtime.engine.record_output(run_id, RUNNER, token, [("log", {"n": 1})])
            f.wait_for(lambda: not f.held.is_set())
            read_before = len(f.read_positions)
            second_runtime.engine.record_output(run_id, RUNNER, token, [("log", {"n": 2})] * 3)
            theirs = runtime.db.head()
            runtime.engine.record_output(run_id, RUNNER, token, [("log", {"n": 3})] * 2)
            f.released.set()

            f.wait_for(f.reaches(runtime.db.head()))
            time.sleep(0.1)  # any NOTIFY still on its way
            read = f.read_positions[read_before:]

            assert read == [theirs - 2, theirs - 1, theirs]  # not its own two
            assert f.delivered == all_events(runtime.db)
            assert f.others == 1  # told: others append between its commits

    def test_a_read_cut_short_inside_its_own_commit_delivers_the_rest_of_it_once(
        self, runtime: Runtime, second_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The store is read 2 events at a time, and the read fails right after a batch that
        # ends inside this process's own commit, handed over while the feed was reading.
        monkeypatch.setattr(feed_module, "BATCH", 2)
        db = runtime.db
        run_id, token = claimed_run(runtime.engine)
        start = db.head()
        delivered: list[StoredRow] = []
        feed = ChangeFeed(db, delivered.extend, poll_interval=60.0, start_after=start)
        runtime.engine.followers.append(feed.offer)
        read, calls = db.events_after, [0]

        def cut_short(position: int, limit: int = 500) -> list[StoredRow]:
            calls[0] += 1
            if calls[0] == 1:  # this process commits while the feed reads
                runtime.engine.record_output(run_id, RUNNER, token, [("log", {"n": 2})] * 3)
            elif calls[0] == 2:
                raise Broken("the connection broke")
            return read(position, limit)

        monkeypatch.setattr(db, "events_after", cut_short)
        second_runtime.engine.record_output(run_id, RUNNER, token, [("log", {"n": 1})])
        with pytest.raises(Broken):
            feed.pump()  # the other's event and the first of this process's three
        assert [row.position for row in delivered] == [start + 1, start + 2]

        feed.pump()  # the rest of the three, from what was handed over

        monkeypatch.setattr(db, "events_after", read)
        assert delivered == [row for row in all_events(db) if row.position > start]

    def test_a_save_stuck_in_this_process_does_not_hold_up_other_processes_events(
        self, runtime: Runtime, second_runtime: Runtime, store_url: str
    ) -> None:
        with following(runtime, other_processes_poll(store_url)) as f:
            run_id, token = claimed_run(second_runtime.engine)
            # As if a save here waited for a database lock: the feed reads the store anyway.
            with runtime.engine.commits.turn:
                second_runtime.engine.record_output(run_id, RUNNER, token, [("log", {})])
                f.wait_for(f.reaches(second_runtime.db.head()), timeout=5.0)

            assert f.delivered == all_events(runtime.db)


class TestSQLiteFeed(FeedContract):
    pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


class TestPostgresFeed(FeedContract):
    pytestmark = [
        pytest.mark.postgres,
        pytest.mark.parametrize("store_url", ["postgres"], indirect=True),
    ]

    def test_stop_ends_the_listener_at_once_and_again_harmlessly(self, runtime: Runtime) -> None:
        # The LISTEN thread sleeps on its socket (up to feed.LISTEN_IDLE) rather than in
        # psycopg's wait: stop must wake it, not wait the sleep out.
        with following(runtime) as f:
            listener = f.feed._listener
            assert listener is not None and listener.is_alive()
            time.sleep(0.2)  # asleep by now
            started = time.monotonic()
            f.feed.stop()
            assert not listener.is_alive()
            assert time.monotonic() - started < 1.0
        f.feed.stop()  # (following's own stop, then this one: nothing left to wake)
