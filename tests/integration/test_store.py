"""The event store contract, written once and run on a SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import OperationalError

from adapters.db import Database, StoredRow
from adapters.store import OrjsonTranscoder
from api.envelopes import Envelope
from api.service.engine import Engine
from api.service.runtime import Runtime
from domain.errors import Conflict, StaleLease
from tests.integration.audit_helpers import delete_event
from tests.support import open_runtime

T = TypeVar("T")
OWNER, RUNNER = "alice", "runner-1"
# A runner's opaque payload that the library's JSONTranscoder would take for its own encodings.
PAYLOAD: dict[str, Any] = {
    "_type_": "x",
    "_data_": 1,
    "nested": {"_type_": "datetime_iso", "_data_": "2024-05-01T12:00:00"},
    "items": [{"_type_": "uuid_hex", "_data_": uuid4().hex}, None, True, 1.5, -7],
    "timestamp": "not a time",
    "text": 'héllo wörld ✓ 🎉 中文 \u0000 \n\t"quoted"',
    "ключ": "значение",
}


def all_events(db: Database) -> list[StoredRow]:
    """The whole log in position order, page by page."""
    rows: list[StoredRow] = []
    while page := db.events_after(rows[-1].position if rows else 0, 100):
        rows.extend(page)
    return rows


def claimed_run(engine: Engine) -> tuple[UUID, int]:
    """A run claimed by RUNNER: its id and fencing token."""
    run_id = engine.submit_run(OWNER, "fix the flaky test").run_id
    _, lease = engine.claim_run(run_id, RUNNER)
    return run_id, lease.fencing_token


def race(calls: list[Callable[[], T]]) -> list[T | Exception]:
    """Run each call in its own thread, released together; results or exceptions in order."""
    barrier = threading.Barrier(len(calls))
    results: list[T | Exception] = [RuntimeError("did not finish")] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_the_transcoder_round_trips_runner_payloads_and_the_event_timestamp() -> None:
    transcoder = OrjsonTranscoder()
    at = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    state = {"timestamp": at, "actor": RUNNER, "kind": "log", "data": PAYLOAD}
    assert transcoder.decode(transcoder.encode(state)) == state


class StoreContract:
    """What both stores promise; subclassed once per backend below."""

    def test_each_run_is_sequenced_one_to_n_in_increasing_positions(self, runtime: Runtime) -> None:
        engine = runtime.engine
        first, token = claimed_run(engine)
        second = engine.submit_run(OWNER, "write the docs").run_id
        engine.record_output(first, RUNNER, token, [("log", {"line": 1}), ("log", {"line": 2})])
        engine.pause_run(first, OWNER)
        engine.archive_run(second, OWNER)
        engine.resume_run(first, OWNER)
        engine.report_outcome(first, RUNNER, token, "no_changes")

        assert [r.sequence for r in runtime.db.run_events(first)] == list(range(1, 8))
        assert [r.sequence for r in runtime.db.run_events(second)] == [1, 2]
        log = all_events(runtime.db)
        positions = [r.position for r in log]
        assert len(log) == 9 and positions == sorted(set(positions))
        for run_id, last in ((first, 7), (second, 2)):
            assert [r.sequence for r in log if r.run_id == run_id] == list(range(1, last + 1))

    def test_a_command_reports_the_position_and_sequence_it_appended(
        self, runtime: Runtime
    ) -> None:
        engine = runtime.engine
        run_id, token = claimed_run(engine)
        appended = engine.record_output(run_id, RUNNER, token, [("log", {}), ("log", {})])
        assert appended.sequence == 4
        assert appended.position == runtime.db.position_of(run_id, 4)
        assert appended.position == runtime.db.head()

    def test_head_is_the_last_position_and_zero_when_empty(self, runtime: Runtime) -> None:
        assert runtime.db.head() == 0
        assert runtime.db.events_after(0) == []
        claimed_run(runtime.engine)
        claimed_run(runtime.engine)
        assert runtime.db.head() == all_events(runtime.db)[-1].position

    def test_position_of_finds_each_stored_event_and_nothing_else(self, runtime: Runtime) -> None:
        run_id, _ = claimed_run(runtime.engine)
        stored = {(r.run_id, r.sequence): r.position for r in all_events(runtime.db)}
        for (rid, sequence), position in stored.items():
            assert runtime.db.position_of(rid, sequence) == position
        assert runtime.db.position_of(run_id, 3) is None
        assert runtime.db.position_of(uuid4(), 1) is None

    def test_run_events_reads_after_a_sequence_with_a_limit(self, runtime: Runtime) -> None:
        run_id, token = claimed_run(runtime.engine)
        runtime.engine.record_output(run_id, RUNNER, token, [("log", {"i": i}) for i in range(5)])
        assert [r.sequence for r in runtime.db.run_events(run_id, after=3, limit=2)] == [4, 5]
        assert runtime.db.run_events(run_id, after=7) == []
        assert runtime.db.run_events(run_id, after=2**63 - 1, limit=1000) == []  # no overflow

    def test_run_events_pages_over_removed_events_in_order(self, runtime: Runtime) -> None:
        # A stream's sequences have no gaps unless an event was removed behind the store's
        # back (an audit finds that); a reader still gets every event there is, in order.
        run_id, token = claimed_run(runtime.engine)
        runtime.engine.record_output(run_id, RUNNER, token, [("log", {"i": i}) for i in range(40)])
        for gone in (5, 6, 7, 20, 42):
            delete_event(runtime, run_id, gone)
        left = [n for n in range(1, 43) if n not in (5, 6, 7, 20, 42)]
        for limit in (1, 3, 4, 10, 100):
            read, after = [], 0
            while page := runtime.db.run_events(run_id, after=after, limit=limit):
                assert len(page) <= limit
                read += [r.sequence for r in page]
                after = page[-1].sequence
            assert read == left, limit
        assert [r.sequence for r in runtime.db.run_events(run_id, 3, 5)] == [4, 8, 9, 10, 11]

    def test_a_runner_payload_is_stored_and_read_back_unchanged(self, runtime: Runtime) -> None:
        run_id, token = claimed_run(runtime.engine)
        runtime.engine.record_output(run_id, RUNNER, token, [("tool.output", PAYLOAD)])

        (row,) = runtime.db.run_events(run_id, after=2)
        assert Envelope.from_row(row).data == PAYLOAD
        domain_events = list(runtime.engine.repository.event_store.get(run_id, gt=2))
        assert domain_events[0].data == PAYLOAD

    def test_concurrent_outputs_under_one_lease_all_land_without_gaps(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        run_id, token = claimed_run(runtime.engine)
        engines = (runtime.engine, second_runtime.engine)
        writers, batches = 12, 5

        def write(i: int) -> list[int]:
            engine = engines[i % 2]
            return [
                engine.record_output(run_id, RUNNER, token, [("log", {"w": i, "b": b})]).sequence
                for b in range(batches)
            ]

        results = race([partial(write, i) for i in range(writers)])

        assert not [r for r in results if isinstance(r, Exception)]
        rows = runtime.db.run_events(run_id)
        assert [r.sequence for r in rows] == list(range(1, 3 + writers * batches))
        written = sorted((e.data["w"], e.data["b"]) for e in map(Envelope.from_row, rows[2:]))
        assert written == [(w, b) for w in range(writers) for b in range(batches)]
        assert sorted(s for r in results if isinstance(r, list) for s in r) == list(
            range(3, 3 + writers * batches)
        )

    def test_two_engines_racing_to_claim_a_run_exactly_one_wins(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        for round_ in range(5):
            run_id = runtime.engine.submit_run(OWNER, f"task {round_}").run_id
            results = race(
                [
                    partial(runtime.engine.claim_run, run_id, "runner-a"),
                    partial(second_runtime.engine.claim_run, run_id, "runner-b"),
                ]
            )
            winners = [r for r in results if not isinstance(r, Exception)]
            losers = [r for r in results if isinstance(r, Exception)]
            assert len(winners) == 1 and len(losers) == 1, results
            assert isinstance(losers[0], Conflict)
            _, lease = winners[0]
            run = runtime.engine.get_run(run_id)
            assert run.version == 2 and run.fencing_token == lease.fencing_token == 1
            assert run.lease is not None and run.lease["lease_id"] == lease.lease_id

    def test_a_second_runtime_on_the_same_database_sees_and_extends_the_log(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        run_id, token = claimed_run(runtime.engine)
        second_runtime.engine.record_output(run_id, RUNNER, token, [("log", {})])
        assert runtime.engine.get_run(run_id).version == 3
        assert runtime.db.head() == second_runtime.db.head()

    def test_a_command_refused_on_a_stale_cached_run_is_decided_again_on_the_store(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        # This process saw the run pending (and keeps it cached); another process claims it.
        run_id = runtime.engine.submit_run(OWNER, "fix it").run_id
        _, lease = second_runtime.engine.claim_run(run_id, "runner-b", RUNNER)

        done = runtime.engine.record_output(run_id, RUNNER, lease.fencing_token, [("log", {})])

        assert done.sequence == 3 and runtime.engine.get_run(run_id).version == 3

    def test_a_command_that_does_nothing_on_a_stale_cached_run_is_decided_again(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        # On the cached (pending) run, expiring lease 1 would be a no-op: it is not, now.
        run_id = runtime.engine.submit_run(OWNER, "fix it").run_id
        second_runtime.engine.lease_seconds = 0.0  # a lease that has lapsed at once
        second_runtime.engine.claim_run(run_id, "runner-b", RUNNER)

        done = runtime.engine.expire_lease(run_id, 1)

        assert done.position is not None and done.status == "failed"
        topics = [r.topic for r in runtime.db.run_events(run_id)]
        assert topics[2:] == ["runledger:lease.expired", "runledger:run.failed"]

    def test_a_command_allowed_on_a_stale_cached_run_is_refused_when_the_store_says_no(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        run_id, token = claimed_run(runtime.engine)
        second_runtime.engine.cancel_run(run_id, OWNER)
        head = runtime.db.head()

        with pytest.raises(StaleLease):
            runtime.engine.record_output(run_id, RUNNER, token, [("log", {})])

        assert runtime.db.head() == head
        assert runtime.engine.get_run(run_id).status == "cancelled"

    def test_the_runtime_opens_again_on_an_existing_database(
        self, store_url: str, tmp_path: Path
    ) -> None:
        first = open_runtime(store_url, tmp_path)
        run_id, _ = claimed_run(first.engine)
        head = first.db.head()
        first.close()

        again = open_runtime(store_url, tmp_path)
        try:
            assert again.db.head() == head
            assert again.engine.get_run(run_id).version == 2
            assert again.engine.submit_run(OWNER, "more").position == again.db.head() > head
        finally:
            again.close()

    def test_runtimes_starting_at_once_on_a_fresh_database_all_work(
        self, store_url: str, tmp_path: Path
    ) -> None:
        def start() -> Runtime:
            runtime = open_runtime(store_url, tmp_path)
            runtime.engine.submit_run(OWNER, "hello")
            return runtime

        results = race([start] * 4)
        runtimes = [r for r in results if isinstance(r, Runtime)]
        try:
            assert runtimes == results, [r for r in results if isinstance(r, Exception)]
            assert len(all_events(runtimes[0].db)) == 4
        finally:
            for runtime in runtimes:
                runtime.close()


class TestSQLiteStore(StoreContract):
    pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


class TestPostgresStore(StoreContract):
    pytestmark = [
        pytest.mark.postgres,
        pytest.mark.parametrize("store_url", ["postgres"], indirect=True),
    ]

    def test_positions_are_read_back_when_a_save_did_not_take_consecutive_ones(
        self, runtime: Runtime
    ) -> None:
        import psycopg

        run_id, token = claimed_run(runtime.engine)
        handed: list[StoredRow] = []
        runtime.engine.followers.append(handed.extend)
        table = f"{runtime.settings.pg_schema}.{runtime.engine.recorder.events_table_name}"
        with psycopg.connect(runtime.settings.pg_conninfo, autocommit=True) as conn:
            sequence = conn.execute(
                "SELECT pg_get_serial_sequence(%s, 'notification_id')", (table,)
            ).fetchone()
            assert sequence is not None
            conn.execute(f"ALTER SEQUENCE {sequence[0]} INCREMENT BY 3")

        done = runtime.engine.record_output(
            run_id, RUNNER, token, [("log", {"i": i}) for i in range(4)]
        )

        stored = runtime.db.run_events(run_id, after=2)
        assert [r.sequence for r in stored] == [3, 4, 5, 6]
        assert handed == stored and done.position == stored[-1].position
        assert [b.position - a.position for a, b in itertools.pairwise(stored)] == [3, 3, 3]

    @pytest.mark.parametrize("committed", [True, False])
    def test_an_append_whose_answer_was_lost_is_stored_once(
        self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, committed: bool
    ) -> None:
        # A fault we cannot cause for real: the connection drops after (or before) the
        # append function ran. The recorder must neither append twice nor see a conflict.
        run_id, token = claimed_run(runtime.engine)
        recorder = runtime.engine.recorder
        append = recorder._append_group
        calls: list[int] = []

        def drop_the_answer(group: Any, writer: bool = False) -> Any:
            calls.append(sum(len(a.events) for a in group))
            if len(calls) == 1:
                if committed:
                    append(group, writer)
                raise OperationalError("server closed the connection unexpectedly")
            return append(group, writer)

        monkeypatch.setattr(recorder, "_append_group", drop_the_answer)
        monkeypatch.setattr("adapters.pgrecorder.time.sleep", lambda _: None)

        done = runtime.engine.record_output(run_id, RUNNER, token, [("log", {"i": 1})] * 3)

        stored = runtime.db.run_events(run_id, after=2)
        assert [r.sequence for r in stored] == [3, 4, 5]
        assert done.sequence == 5 and done.position == stored[-1].position
        assert calls == ([3] if committed else [3, 3])

    def test_a_stale_save_is_refused_before_it_takes_positions(
        self, runtime: Runtime, second_runtime: Runtime
    ) -> None:
        # The run is cached here at version 2; another process appends. The save on the
        # stale copy is refused up front, so no position is used up: the log stays dense.
        run_id, token = claimed_run(runtime.engine)
        second_runtime.engine.record_output(run_id, RUNNER, token, [("log", {"by": "b"})])

        runtime.engine.record_output(run_id, RUNNER, token, [("log", {"by": "a"})])

        positions = [r.position for r in all_events(runtime.db)]
        assert positions == list(range(1, len(positions) + 1))


def test_a_claim_hands_over_the_runs_work_as_values_that_cannot_change_the_engines_run(
    runtime: Runtime,
) -> None:
    engine = runtime.engine
    run_id = engine.submit_run(OWNER, "fix it").run_id
    _, lease = engine.claim_run(run_id, RUNNER)

    with pytest.raises(TypeError):
        lease.run["task"] = "something else"  # type: ignore[index]

    assert lease.run["run_id"] == str(run_id) and lease.run["task"] == "fix it"
    assert engine.get_run(run_id).task == "fix it"
