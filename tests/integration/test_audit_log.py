"""The audit log's writer (adapters/audit_writer.py) on both stores: every event's hash is
a leaf in commit order, none skipped, none overtaken; checkpoints come at the configured
cadence, are kept, and verify; a rebuilt log equals the live one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters import audit_store, merkle, merkle_log, merkle_tables
from adapters.audit_writer import LogWriter
from adapters.checkpoints import verify_note
from api.service.runtime import Runtime
from tests.integration.audit_helpers import dump_tree
from tests.support import open_runtime

OWNER = "alice"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rt(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime (not leading: the tests drive its writer) on a fresh store."""
    runtime = open_runtime(store_url, tmp_path, checkpoint_events=5, checkpoint_seconds=60)
    yield runtime
    runtime.close()


def writer(rt: Runtime, clock: Clock, **kw: Any) -> LogWriter:
    """A writer like the runtime's, on a clock of the test's."""
    options = {"every_events": 5, "every_seconds": 60.0, **kw}
    return LogWriter(rt.db, rt.signer, clock=clock, **options)


def submit(rt: Runtime, n: int) -> None:
    """n new runs: n events."""
    for i in range(n):
        rt.engine.submit_run(OWNER, f"task {i}")


def stored_hashes(rt: Runtime) -> list[tuple[int, bytes | None]]:
    """Every stored event's (position, hash), in position order."""
    pos = rt.db.position_column
    with rt.db.reading() as cur:
        rows = cur.execute(f"SELECT {pos}, hash FROM {rt.db.events_table} ORDER BY {pos}")
        return [(int(p), None if h is None else bytes(h)) for p, h in rows.fetchall()]


def checkpoint_sizes(rt: Runtime) -> list[int]:
    with rt.db.reading() as cur:
        rows = cur.execute("SELECT tree_size FROM checkpoints ORDER BY tree_size").fetchall()
    return [int(r[0]) for r in rows]


def test_every_event_is_a_leaf_in_commit_order_and_the_root_is_theirs(rt: Runtime) -> None:
    submit(rt, 7)
    rt.engine.cancel_run(rt.engine.submit_run(OWNER, "x").run_id, OWNER)
    size = writer(rt, Clock(), every_events=1000).catch_up()

    events = stored_hashes(rt)
    assert size == len(events) == 9
    hashes = [h for _, h in events if h is not None]
    with rt.db.reading() as cur:
        assert merkle_log.head(cur) == (events[-1][0], 9)
        assert merkle_log.root(cur, 9) == merkle.mth(hashes)
        for index, (position, _) in enumerate(events):
            assert merkle_log.leaf_index_of(cur, position) == index


def test_leaves_name_their_stream_and_sequence(rt: Runtime) -> None:
    run_id = rt.engine.submit_run(OWNER, "x").run_id
    rt.engine.cancel_run(run_id, OWNER)
    writer(rt, Clock()).catch_up()
    with rt.db.reading() as cur:
        leaves = audit_store.stream_leaves(cur, run_id)
    assert [(leaf.leaf_index, leaf.sequence) for leaf in leaves] == [(0, 1), (1, 2)]
    assert [leaf.leaf_hash for leaf in leaves] == [
        merkle.leaf_hash(h) for _, h in stored_hashes(rt) if h is not None
    ]


def test_an_event_without_a_hash_yet_is_waited_for_not_skipped(rt: Runtime) -> None:
    submit(rt, 4)
    third = stored_hashes(rt)[2][0]
    pos = rt.db.position_column
    with rt.db.transaction() as cur:  # the backfill has not reached it yet
        cur.execute(f"UPDATE {rt.db.events_table} SET hash = NULL WHERE {pos} = ?", (third,))
    log = writer(rt, Clock(), every_events=1000)
    assert log.catch_up() == 2  # stops before it, and stays there
    assert log.catch_up() == 2

    from adapters.backfill import backfill

    backfill(rt.db)
    assert log.catch_up() == 4
    hashes = [h for _, h in stored_hashes(rt) if h]
    with rt.db.reading() as cur:
        assert merkle_log.root(cur, 4) == merkle.mth(hashes)


def test_a_checkpoint_comes_first_then_at_least_every_n_events(rt: Runtime) -> None:
    clock = Clock()
    log = writer(rt, clock)
    log.catch_up()
    assert checkpoint_sizes(rt) == [0]  # the first one at once, even of the empty tree
    submit(rt, 12)
    log.catch_up()
    assert checkpoint_sizes(rt) == [0, 5, 10]  # 2 events wait for the clock or 3 more
    submit(rt, 3)
    log.catch_up()
    assert checkpoint_sizes(rt) == [0, 5, 10, 15]


def test_a_checkpoint_comes_t_seconds_after_events_arrived_and_not_without_them(
    rt: Runtime,
) -> None:
    clock = Clock()
    log = writer(rt, clock)
    log.catch_up()
    clock.now += 3600
    log.catch_up()
    assert checkpoint_sizes(rt) == [0]  # no events: no new checkpoint, however long
    submit(rt, 2)
    log.tick()
    clock.now += 59
    assert log.tick() == pytest.approx(1.0)  # due in a second
    assert checkpoint_sizes(rt) == [0]
    clock.now += 1
    log.tick()
    assert checkpoint_sizes(rt) == [0, 2]


def test_every_checkpoint_is_kept_signed_by_the_stores_origin(rt: Runtime) -> None:
    log = writer(rt, Clock())
    for _ in range(3):
        submit(rt, 5)
        log.catch_up()
    sizes = checkpoint_sizes(rt)
    with rt.db.reading() as cur:
        origin = f"runledger/{merkle_tables.server_id(cur)}"
        kept = [audit_store.checkpoint_at(cur, n) for n in sizes]
        for checkpoint in kept:
            assert checkpoint is not None
            assert checkpoint.vkey == rt.signer.vkey
            checked = verify_note(checkpoint.note, checkpoint.vkey)
            assert checked.origin == origin == rt.signer.name
            assert checked.size == checkpoint.tree_size
            assert checked.root_hash == checkpoint.root_hash
            assert checkpoint.root_hash == merkle_log.root(cur, checkpoint.tree_size)
    assert [c.tree_size for c in kept if c] == [0, 5, 10, 15]


def test_a_second_process_shares_the_stores_origin(rt: Runtime, store_url: str, tmp_path: Path):
    other = open_runtime(store_url, tmp_path / "other")  # another data directory: another key
    try:
        assert other.signer.name == rt.signer.name
        assert other.signer.vkey != rt.signer.vkey
    finally:
        other.close()


def test_a_rebuilt_log_equals_the_live_one_and_its_checkpoints(rt: Runtime) -> None:
    log = writer(rt, Clock(), batch=3)
    for n in (4, 7, 1, 6):
        submit(rt, n)
        log.catch_up()
    with rt.db.reading() as cur:
        live = dump_tree(cur)
    with rt.db.transaction() as cur:  # dropped, as after a disaster
        for table in merkle_tables.TREE_TABLES:
            cur.execute(f"DROP TABLE {table}")
    merkle_tables.create_tables(rt.db)

    assert writer(rt, Clock(), batch=1000).rebuild() == 18

    sizes = checkpoint_sizes(rt)
    assert len(sizes) > 3
    with rt.db.reading() as cur:
        assert dump_tree(cur) == live
        for size in sizes:
            kept = audit_store.checkpoint_at(cur, size)
            assert kept is not None and merkle_log.root(cur, size) == kept.root_hash


def test_two_writers_at_once_append_each_event_once(rt: Runtime, store_url: str, tmp_path: Path):
    submit(rt, 30)
    other = open_runtime(store_url, tmp_path)
    try:
        first, second = writer(rt, Clock(), batch=4), writer(other, Clock(), batch=3)
        import threading

        threads = [threading.Thread(target=w.catch_up) for w in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first.catch_up()
    finally:
        other.close()
    hashes = [h for _, h in stored_hashes(rt) if h]
    with rt.db.reading() as cur:
        assert merkle_log.size(cur) == 30
        assert merkle_log.root(cur, 30) == merkle.mth(hashes)
