"""Hash chains for events stored before the chain existed (docs/audit.md).

An upgraded store holds events without `prev_hash`/`hash`. At start the runtime hashes
them, stream by stream in version order (`backfill`): resumable (each stream is one
transaction, and only events without a hash are written) and idempotent (a second run, or
two processes at once, write the same values). A save that meets a stream not hashed yet
hashes it first (`stream_hash`), so a chain never links to a missing hash.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from adapters.chain import ZERO, event_hash
from adapters.db import Cursor, Database


def stream_hash(db: Database, aggregate_id: UUID, version: int) -> bytes | None:
    """The hash of one stored event, hashing its stream first when it has none yet; None
    when there is no such event (or the stream has a gap before it)."""
    found = _stored_hash(db, aggregate_id, version)
    if found is None or found[0] is not None:
        return None if found is None else found[0]
    with db.transaction() as cur:
        hash_stream(db, cur, aggregate_id)
    found = _stored_hash(db, aggregate_id, version)
    return None if found is None else found[0]


def _stored_hash(db: Database, aggregate_id: UUID, version: int) -> tuple[bytes | None] | None:
    with db.reading() as cur:
        row = cur.execute(
            f"SELECT hash FROM {db.events_table} "
            "WHERE originator_id = ? AND originator_version = ?",
            (db.id_param(aggregate_id), version),
        ).fetchone()
    if row is None:
        return None
    return (None if row[0] is None else bytes(row[0]),)


def hash_stream(db: Database, cur: Cursor, aggregate_id: UUID) -> int:
    """Hash the events of one stream that have no hash, in version order, each linked to
    the one before (stored or just computed); stops at a gap in the versions. The number
    of events hashed."""
    rows = cur.execute(
        f"SELECT originator_version, topic, state, hash FROM {db.events_table} "
        "WHERE originator_id = ? ORDER BY originator_version",
        (db.id_param(aggregate_id),),
    ).fetchall()
    prev, hashed = ZERO, 0
    for expected, (version, topic, state, stored) in enumerate(rows, start=1):
        if version != expected:
            break  # a missing event: what follows cannot be linked (verify says so)
        if stored is not None:
            prev = bytes(stored)
            continue
        digest = event_hash(aggregate_id, version, topic, bytes(state), prev)
        cur.execute(
            f"UPDATE {db.events_table} SET prev_hash = ?, hash = ? "
            "WHERE originator_id = ? AND originator_version = ? AND hash IS NULL",
            (prev, digest, db.id_param(aggregate_id), version),
        )
        prev, hashed = digest, hashed + 1
    return hashed


def backfill(db: Database, page: int = 500, progress: Callable[[int], None] | None = None) -> int:
    """Hash every stream that holds events without a hash, a page of streams at a time,
    each stream in its own transaction; the number of events hashed."""
    after, total = "", 0
    while True:
        with db.reading() as cur:
            ids = [
                row[0]
                for row in cur.execute(
                    "SELECT DISTINCT CAST(originator_id AS TEXT) AS id "
                    f"FROM {db.events_table} "
                    "WHERE hash IS NULL AND CAST(originator_id AS TEXT) > ? ORDER BY id LIMIT ?",
                    (after, page),
                ).fetchall()
            ]
        if not ids:
            return total
        for text in ids:
            with db.transaction() as cur:
                total += hash_stream(db, cur, UUID(text))
            if progress is not None:
                progress(total)
        after = ids[-1]
