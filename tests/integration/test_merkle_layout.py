"""The Merkle log's layout changes (adapters/merkle_log.py `LAYOUT`) on both stores: a store
whose tree tables have an older layout (1: every level stored, the leaf hashes at level 0,
UNIQUE(position), no `log_layout` in audit_meta; 2: a merkle_leaves row per leaf with its
event hash) is still read as it is by the store's audit, and on start has its tree emptied
and appended anew from the events; the checkpoints signed before stay and verify against
the rebuilt log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import audit_store, merkle, merkle_log, merkle_tables, store_audit
from adapters.audit_writer import LogWriter
from adapters.db import Cursor
from adapters.store_audit import StoredLeaf
from api.service.runtime import Runtime
from tests.support import open_runtime


@pytest.fixture
def rt(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime (not leading: the test drives its writer) on a fresh store."""
    runtime = open_runtime(store_url, tmp_path, checkpoint_events=5, checkpoint_seconds=60)
    yield runtime
    runtime.close()


def writer(rt: Runtime) -> LogWriter:
    return LogWriter(rt.db, rt.signer, every_events=5, every_seconds=60.0, batch=3)


def to_old_layout(cur: Cursor, blob: str, layout: int, leaves: list[StoredLeaf]) -> None:
    """Rewrite the tree's tables as layout 1 (every level stored, the leaf hashes at level
    0, one merkle_leaves row per leaf, no `log_layout`) or 2 (levels >= 4 stored, each
    leaf's event hash in its merkle_leaves row) held them: the same tree."""
    hashes = merkle_log.entries(cur, 0, len(leaves)) if leaves else []
    for table in merkle_tables.TREE_TABLES:
        if table != "merkle_head":
            cur.execute(f"DROP TABLE {table}")
    cur.execute(
        "CREATE TABLE merkle_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL,"
        f" hash {blob} NOT NULL, PRIMARY KEY (level, idx))"
    )
    tree = merkle.levels([merkle.leaf_hash(h) for h in hashes])
    for level, row in enumerate(tree):
        if layout == 1 or level >= 4:
            for idx, h in enumerate(row[: len(hashes) >> level]):
                cur.execute("INSERT INTO merkle_nodes VALUES (?, ?, ?)", (level, idx, h))
    if layout == 1:
        cur.execute(
            "CREATE TABLE merkle_leaves (leaf_index BIGINT PRIMARY KEY,"
            " position BIGINT NOT NULL UNIQUE, stream_id TEXT NOT NULL, sequence BIGINT NOT NULL)"
        )
        for leaf in leaves:
            cur.execute(
                "INSERT INTO merkle_leaves VALUES (?, ?, ?, ?)",
                (leaf.leaf_index, leaf.position, leaf.stream_id, leaf.sequence),
            )
        cur.execute("DELETE FROM audit_meta WHERE name = 'log_layout'")
        return
    cur.execute(
        "CREATE TABLE merkle_leaves (leaf_index BIGINT PRIMARY KEY, position BIGINT NOT NULL,"
        f" stream_id TEXT NOT NULL, sequence BIGINT NOT NULL, hash {blob} NOT NULL)"
    )
    for leaf, h in zip(leaves, hashes, strict=True):
        cur.execute(
            "INSERT INTO merkle_leaves VALUES (?, ?, ?, ?, ?)",
            (leaf.leaf_index, leaf.position, leaf.stream_id, leaf.sequence, h),
        )
    cur.execute("UPDATE audit_meta SET value = '2' WHERE name = 'log_layout'")


@pytest.mark.parametrize("layout", [1, 2])
def test_an_older_layout_log_is_rebuilt_and_its_checkpoints_still_verify(
    rt: Runtime, layout: int
) -> None:
    log = writer(rt)
    for n in (4, 7, 6):
        for i in range(n):
            rt.engine.submit_run("alice", f"task {i}")
        log.catch_up()
    with rt.db.reading() as cur:
        size = merkle_log.size(cur)
        head = merkle_log.head(cur)
    live_leaves = list(store_audit.stored_leaves(rt.db))
    signed = store_audit.stored_checkpoints(rt.db)
    assert size == 17 and len(signed) > 3

    with rt.db.transaction() as cur:
        to_old_layout(cur, "BYTEA" if rt.db.postgres else "BLOB", layout, live_leaves)
    # The store's audit (export, verify) reads the older layout as it is.
    assert list(store_audit.stored_leaves(rt.db)) == live_leaves

    merkle_tables.create_tables(rt.db)  # as on start: the old tree goes, the checkpoints stay
    with rt.db.reading() as cur:
        assert merkle_log.head(cur) == (0, 0)
        assert audit_store.latest_checkpoint(cur) == signed[-1]
        assert cur.execute("SELECT COUNT(*) FROM merkle_bundles").fetchone()[0] == 0
    assert not rt.db.has_table("merkle_leaves")
    assert log.sign_if_due() is None  # nothing signed below the kept checkpoints

    assert log.catch_up() == size
    assert store_audit.stored_checkpoints(rt.db) == signed  # none signed while catching up
    assert list(store_audit.stored_leaves(rt.db)) == live_leaves
    with rt.db.reading() as cur:
        assert merkle_log.head(cur) == head
        for checkpoint in signed:
            root = merkle_log.root(cur, checkpoint.tree_size)
            assert root == checkpoint.root_hash, checkpoint.tree_size
        for leaf in live_leaves:
            assert merkle_log.leaf_index_of(cur, leaf.position) == leaf.leaf_index
    merkle_tables.create_tables(rt.db)  # the new layout stays as it is
    with rt.db.reading() as cur:
        assert merkle_log.size(cur) == size
