"""Which event each leaf of the Merkle log is (adapters/merkle_index.py), on both stores:
for histories of interleaved streams, positions that skip numbers, and any batching, every
leaf maps back to its event (position, stream, sequence), every position to its leaf, a
stream to its leaves, and the rows kept are the same whatever the batches."""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from collections.abc import Iterator

import pytest

from adapters import audit_store, merkle, merkle_index, merkle_log, merkle_tables
from adapters.db import Database
from adapters.merkle_log import Leaf
from adapters.store import StoreSettings
from tests.integration.audit_helpers import dump_tree


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(StoreSettings.from_url(store_url))
    merkle_tables.create_tables(database)
    yield database
    database.close()


def history(seed: int, n: int = 400) -> list[Leaf]:
    """n events of 4 streams, written in runs of 1 to 40 consecutive events each (as
    batches and single commands interleave), positions skipping now and then."""
    rng = random.Random(seed)
    streams = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(4)]
    sequences = dict.fromkeys(streams, 0)
    leaves: list[Leaf] = []
    position = rng.randint(1, 3)
    while len(leaves) < n:
        stream = rng.choice(streams)
        for _ in range(min(n - len(leaves), rng.choice((1, 1, 2, 7, 40)))):
            sequences[stream] += 1
            digest = hashlib.sha256(f"{seed} {len(leaves)}".encode()).digest()
            leaves.append(Leaf(position, digest, stream, sequences[stream]))
            position += rng.choice((1, 1, 1, 1, 1, 2, 9))
    return leaves


def append(db: Database, leaves: list[Leaf], seed: int) -> None:
    """Append in random batches, one transaction each."""
    rng, at = random.Random(seed), 0
    while at < len(leaves):
        size = rng.choice((1, 3, 16, 17, 50, 120))
        with db.transaction() as cur:
            merkle_log.append(cur, leaves[at : at + size])
        at += size


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_leaf_maps_to_its_event_and_back(db: Database, seed: int) -> None:
    leaves = history(seed)
    append(db, leaves, seed)
    n = len(leaves)
    with db.reading() as cur:
        assert merkle_index.streams(cur, 0, n) == [(x.stream_id, x.sequence) for x in leaves]
        assert merkle_index.streams(cur, 37, 91) == [
            (x.stream_id, x.sequence) for x in leaves[37:91]
        ]
        assert merkle_index.positions(cur, range(n)) == [x.position for x in leaves]
        assert merkle_log.entries(cur, 5, 300) == [x.hash for x in leaves[5:300]]
        logged = {x.position: i for i, x in enumerate(leaves)}
        for position in range(1, leaves[-1].position + 3):
            assert merkle_log.leaf_index_of(cur, position) == logged.get(position), position
        for stream in {x.stream_id for x in leaves}:
            expected = [(i, x) for i, x in enumerate(leaves) if x.stream_id == stream]
            found = audit_store.stream_leaves(cur, uuid.UUID(stream))
            assert [(f.leaf_index, f.position, f.sequence, f.leaf_hash) for f in found] == [
                (i, x.position, x.sequence, merkle.leaf_hash(x.hash)) for i, x in expected
            ]


@pytest.mark.parametrize("seed", [4, 5])
def test_the_rows_do_not_depend_on_the_batches(db: Database, seed: int) -> None:
    leaves = history(seed)
    append(db, leaves, seed)
    with db.reading() as cur:
        first = dump_tree(cur)
        runs = len(first["merkle_streams"])
    with db.transaction() as cur:
        merkle_log.reset(cur)
    append(db, leaves, seed + 100)
    with db.reading() as cur:
        assert dump_tree(cur) == first
    # One row per run of a stream's consecutive events, one per skip of the positions.
    breaks = sum(
        1
        for a, b in itertools.pairwise(leaves)
        if (a.stream_id, a.sequence + 1) != (b.stream_id, b.sequence)
    )
    assert runs == breaks + 1
    skips = sum(1 for a, b in itertools.pairwise(leaves) if b.position != a.position + 1)
    assert len(first["merkle_positions"]) == skips + 1
    assert len(first["merkle_bundles"]) == -(-len(leaves) // merkle_log.BUNDLE)


def test_a_stream_whose_sequences_do_not_rise_keeps_each_leafs_own(db: Database) -> None:
    # Not what a store writes, but what an edited events table may hold: sequences 1, 3,
    # 2, 4 of one stream span 4 without being one run, and no leaf may take another's.
    stream = str(uuid.uuid4())
    leaves = [
        Leaf(position, hashlib.sha256(bytes([position])).digest(), stream, sequence)
        for position, sequence in enumerate((1, 3, 2, 4), start=1)
    ]
    with db.transaction() as cur:
        merkle_log.append(cur, leaves)
    with db.reading() as cur:
        assert merkle_index.streams(cur, 0, 4) == [(stream, s) for s in (1, 3, 2, 4)]
