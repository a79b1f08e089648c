"""The stored Merkle log (adapters/merkle_log.py) on both stores: appended in batches, it
answers every earlier root and every proof as the pure tree over the same events does, is
rebuilt node for node, and never takes an event out of commit order."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator

import pytest

from adapters import merkle, merkle_log, merkle_tables
from adapters.db import Database
from adapters.store import StoreSettings
from tests.integration.audit_helpers import dump_tree

BATCHES = [1, 2, 1, 5, 8, 16, 3, 64, 37, 100, 1, 62]  # 300 leaves, ragged at every size


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    """The log's tables on a fresh database of each store."""
    database = Database(StoreSettings.from_url(store_url))
    merkle_tables.create_tables(database)
    yield database
    database.close()


STREAM = "6f1c3a52-8a43-4c55-9d1e-0c1f2e3d4b5a"


def leaf(position: int, event_hash: bytes) -> merkle_log.Leaf:
    """An event at `position` with this hash (its stream and sequence do not matter here)."""
    return merkle_log.Leaf(position, event_hash, STREAM, position)


def events(n: int, first_position: int = 1) -> list[merkle_log.Leaf]:
    """n events in commit order; positions skip numbers, as after a rolled-back write."""
    rng = random.Random(n)
    out, position = [], first_position
    for i in range(n):
        out.append(leaf(position, hashlib.sha256(f"event {i}".encode()).digest()))
        position += rng.choice((1, 1, 1, 2, 5))
    return out


def append_in_batches(db: Database, leaves: list[merkle_log.Leaf]) -> list[int]:
    """Append the leaves batch by batch, one transaction each; the sizes after each. The
    root each append hands back is the pure tree's over the leaves so far."""
    sizes, at = [], 0
    for batch in BATCHES:
        chunk = leaves[at : at + batch]
        if not chunk:
            break
        with db.transaction() as cur:
            size, root = merkle_log.append_rooted(cur, chunk)
        at += len(chunk)
        assert root == merkle.mth([leaf.hash for leaf in leaves[:at]]), at
        sizes.append(size)
    return sizes


def test_every_earlier_root_equals_the_pure_tree_over_the_same_events(db: Database) -> None:
    leaves = events(300)
    hashes = [leaf.hash for leaf in leaves]
    sizes = append_in_batches(db, leaves)
    assert sizes == [sum(BATCHES[: i + 1]) for i in range(len(BATCHES))]
    with db.reading() as cur:
        assert merkle_log.size(cur) == 300
        assert merkle_log.head(cur) == (leaves[-1][0], 300)
        for size in range(301):
            assert merkle_log.root(cur, size) == merkle.mth(hashes[:size]), size


def test_proofs_equal_the_pure_trees_at_every_batch_boundary(db: Database) -> None:
    leaves = events(300)
    hashes = [leaf.hash for leaf in leaves]
    subtree = merkle.levels_source(merkle.levels([merkle.leaf_hash(h) for h in hashes]))
    sizes = append_in_batches(db, leaves)
    rng = random.Random(7)
    with db.reading() as cur:
        for n in sizes:
            root = merkle.mth(hashes[:n])
            for i in {0, n - 1, *rng.sample(range(n), min(n, 10))}:
                proof = merkle_log.inclusion(cur, i, n)
                assert proof == merkle.inclusion_proof(i, n, subtree), (i, n)
                leaf = merkle_log.leaf_hash(cur, i)
                assert leaf == merkle.leaf_hash(hashes[i])
                assert merkle.verify_inclusion(leaf, i, n, proof, root)
            for m in {1, n, *(s for s in sizes if s <= n), *rng.sample(range(1, n + 1), min(n, 5))}:
                proof = merkle_log.consistency(cur, m, n)
                assert proof == merkle.consistency_proof(m, n, subtree), (m, n)
                assert merkle.verify_consistency(m, n, merkle.mth(hashes[:m]), root, proof)


def test_every_leaf_of_the_final_tree_proves_its_inclusion(db: Database) -> None:
    leaves = events(300)
    append_in_batches(db, leaves)
    with db.reading() as cur:
        root = merkle_log.root(cur, 300)
        for i, (position, event_hash, _, _) in enumerate(leaves):
            assert merkle_log.leaf_index_of(cur, position) == i
            proof = merkle_log.inclusion(cur, i, 300)
            assert merkle.verify_inclusion(merkle.leaf_hash(event_hash), i, 300, proof, root)


def test_the_log_holds_every_perfect_subtree_and_nothing_else(db: Database) -> None:
    append_in_batches(db, events(300))
    with db.reading() as cur:
        nodes = {(level, idx) for level, idx, _ in dump_tree(cur)["merkle_nodes"]}
    expected = {(lv, i) for lv in range(merkle_log.STORED_FROM, 9) for i in range(300 >> lv)}
    assert nodes == expected


def test_a_rebuild_from_the_events_gives_the_same_rows(db: Database) -> None:
    leaves = events(300)
    append_in_batches(db, leaves)
    with db.reading() as cur:
        live = dump_tree(cur)
    with db.transaction() as cur:
        assert merkle_log.rebuild(cur, iter(leaves), batch=7) == 300
    with db.reading() as cur:
        assert dump_tree(cur) == live


def test_a_dropped_log_is_recreated_and_rebuilt_equal(db: Database) -> None:
    leaves = events(300)
    append_in_batches(db, leaves)
    with db.reading() as cur:
        live = dump_tree(cur)
    with db.transaction() as cur:
        for table in merkle_tables.TREE_TABLES:
            cur.execute(f"DROP TABLE {table}")
    merkle_tables.create_tables(db)
    merkle_tables.create_tables(db)  # idempotent
    with db.transaction() as cur:
        assert merkle_log.size(cur) == 0
        assert merkle_log.root(cur, 0) == merkle.EMPTY_ROOT
        merkle_log.rebuild(cur, leaves)
    with db.reading() as cur:
        assert dump_tree(cur) == live


@pytest.mark.parametrize(
    "batch",
    [
        [leaf(10, b"\x01" * 32)],  # the last position again
        [leaf(9, b"\x01" * 32)],  # before it
        [leaf(11, b"\x01" * 32), leaf(11, b"\x02" * 32)],  # a repeat within the batch
        [leaf(12, b"\x01" * 32), leaf(11, b"\x02" * 32)],  # backwards within the batch
    ],
)
def test_a_position_not_after_the_last_one_is_refused_and_nothing_is_written(
    db: Database, batch: list[merkle_log.Leaf]
) -> None:
    with db.transaction() as cur:
        merkle_log.append(cur, [leaf(3, b"\x00" * 32), leaf(10, b"\x00" * 32)])
    with db.reading() as cur:
        before = dump_tree(cur)
    with pytest.raises(merkle_log.OutOfOrder), db.transaction() as cur:
        merkle_log.append(cur, batch)
    with db.reading() as cur:
        assert dump_tree(cur) == before


def test_a_hash_that_is_not_32_bytes_is_refused(db: Database) -> None:
    with pytest.raises(ValueError), db.transaction() as cur:
        merkle_log.append(cur, [leaf(1, b"\x00" * 31)])
    with db.reading() as cur:
        assert merkle_log.size(cur) == 0


def test_sizes_and_leaves_beyond_the_log_are_not_in_it(db: Database) -> None:
    with db.transaction() as cur:
        merkle_log.append(cur, events(5))
    with db.reading() as cur:
        for ask in (
            lambda: merkle_log.root(cur, 6),
            lambda: merkle_log.inclusion(cur, 5, 5),
            lambda: merkle_log.inclusion(cur, 0, 6),
            lambda: merkle_log.consistency(cur, 3, 6),
            lambda: merkle_log.consistency(cur, 0, 5),
            lambda: merkle_log.consistency(cur, 5, 4),
        ):
            with pytest.raises(merkle_log.NotInLog):
                ask()
        assert merkle_log.leaf_index_of(cur, 10_000) is None
        assert merkle_log.leaf_hash(cur, 5) is None
        assert merkle_log.consistency(cur, 5, 5) == []


def test_of_two_appenders_racing_for_the_same_events_exactly_one_wins(db: Database) -> None:
    leaves = events(4)
    with db.transaction() as cur:
        merkle_log.append(cur, leaves[:1])
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def appender() -> None:
        start.wait()
        try:
            with db.transaction() as cur:
                outcomes.append(merkle_log.append(cur, leaves[1:]))
        except merkle_log.OutOfOrder as exc:
            outcomes.append(type(exc))

    threads = [threading.Thread(target=appender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == sorted([4, merkle_log.OutOfOrder], key=str)
    with db.reading() as cur:
        assert merkle_log.root(cur, 4) == merkle.mth([leaf.hash for leaf in leaves])


def test_creating_the_tables_beside_a_writer_holding_the_head_waits_for_nothing(
    db: Database,
) -> None:
    # A process starting beside a busy server (a CLI, a second server) creates the tables
    # while the server's log writer holds the head's row in its transaction. With the tables
    # all there it runs no DDL, so it neither waits for the row nor takes a lock the writer
    # then waits for (on PostgreSQL that was a deadlock; before it, a lock timeout).
    other = Database(db.settings)
    try:
        with db.transaction() as writer:
            writer.execute("UPDATE merkle_head SET size = size WHERE id = 1")
            merkle_tables.create_tables(other)  # raised (lock timeout, deadlock) when it waited
            writer.execute("INSERT INTO merkle_streams VALUES (0, ?, 1, 1)", (b"s",))
    finally:
        other.close()
