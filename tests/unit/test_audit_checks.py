"""The one-pass checks of verify and import: the Merkle frontier gives the RFC 9162 root at
every size, following chains event by event finds what check_stream finds, and the class
version (outside the hash) is held to the stored state."""

from __future__ import annotations

import hashlib
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from adapters import merkle
from adapters.audit_checks import Chains, Frontier
from adapters.chain import ZERO, event_hash
from adapters.export_format import EventLine, stored_form_problem
from adapters.stored import EVENT_CLASSES, StoredRow
from adapters.verify import check_stream
from domain.runs import Run

STREAM = UUID("00000000-0000-4000-8000-000000000001")


def test_the_frontier_root_is_the_merkle_tree_hash_at_every_size() -> None:
    entries = [hashlib.sha256(bytes([n])).digest() for n in range(70)]
    frontier = Frontier()
    assert frontier.root() == merkle.mth([])
    for size, entry in enumerate(entries, start=1):
        frontier.add(entry)
        assert frontier.root() == merkle.mth(entries[:size])


def chain_of(length: int) -> list[StoredRow]:
    """A run's well-chained events: a submission, then output."""
    rows, prev = [], ZERO
    for version in range(1, length + 1):
        topic = Run.OutputRecorded.TOPIC
        state = b'{"timestamp":"2026-11-23T12:00:00.000000Z","actor":"r","kind":"log","data":{}}'
        digest = event_hash(STREAM, version, topic, state, prev)
        rows.append(StoredRow(version, STREAM, version, topic, state, prev, digest))
        prev = digest
    return rows


edits = st.lists(
    st.tuples(st.sampled_from(["drop", "swap", "rehash", "relink"]), st.integers(0, 7)),
    max_size=3,
)


@given(length=st.integers(1, 8), changes=edits)
def test_following_in_order_finds_the_first_flaw_check_stream_finds(
    length: int, changes: list[tuple[str, int]]
) -> None:
    rows = chain_of(length)
    for change, at in changes:
        if not rows:
            break
        at %= len(rows)
        if change == "drop":
            del rows[at]
        elif change == "swap" and at + 1 < len(rows):
            rows[at], rows[at + 1] = rows[at + 1], rows[at]
        elif change == "rehash":
            rows[at] = rows[at]._replace(hash=bytes(32))
        elif change == "relink":
            rows[at] = rows[at]._replace(prev_hash=bytes([1]) * 32)
    chains = Chains()
    flaws = [flaw for row in rows if (flaw := chains.follow(row)) is not None]
    assert flaws == ([] if check_stream(rows).valid else [check_stream(rows).first_bad])


def test_every_upcast_adds_a_field() -> None:
    """What stored_form_problem relies on to hold the class version to the state: when an
    upcast that adds nothing is written, that check needs another way."""
    for cls in EVENT_CLASSES.values():
        for step in range(1, getattr(cls, "class_version", 1)):
            state = {"runner_id": "r"}
            before = set(state)
            getattr(cls, f"upcast_v{step}_v{step + 1}")(state)
            assert set(state) > before, (cls, step)


def test_a_state_claiming_an_older_class_version_than_its_fields_is_refused() -> None:
    topic = Run.Claimed.TOPIC
    state = (
        b'{"timestamp":"2026-11-23T12:00:00.000000Z","actor":"r","runner_id":"r","lease_id":"l",'
        b'"fencing_token":1,"lease_expires_at":"2026-11-23T12:00:30.000000Z","runner":"r",'
        b'"class_version":2}'
    )
    digest = event_hash(STREAM, 2, topic, state, ZERO)
    good = StoredRow(1, STREAM, 2, topic, state, ZERO, digest)
    envelope = {
        "run_id": str(STREAM),
        "sequence": 2,
        "type": "run.claimed",
        "at": "2026-11-23T12:00:00.000000Z",
        "actor": "r",
        "data": {
            "runner_id": "r",
            "lease_id": "l",
            "fencing_token": 1,
            "lease_expires_at": "2026-11-23T12:00:30.000000Z",
            "runner": "r",
        },
        "prev_hash": ZERO.hex(),
        "hash": digest.hex(),
    }
    assert stored_form_problem(EventLine(2, "run", good, envelope)) is None

    older = good._replace(state=state.replace(b',"class_version":2', b""))
    assert stored_form_problem(EventLine(2, "run", older, envelope)) == (
        "the stored state already has the fields of a class version above 1"
    )
