"""Chains for a store written before them, on both stores: the backfill gives every old
event the hash it would have had, resumes where it stopped, changes nothing when run
again, and a save on a stream not hashed yet hashes it first."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from adapters.backfill import backfill, hash_stream
from api.service.runtime import Runtime

OWNER, RUNNER = "alice", "runner-1"


def chains(runtime: Runtime) -> list[tuple[Any, ...]]:
    """Every event's (stream, version, prev_hash, hash), in position order."""
    table = runtime.db.events_table
    with runtime.db.reading() as cur:
        rows = cur.execute(
            f"SELECT originator_id, originator_version, prev_hash, hash FROM {table} "
            "ORDER BY originator_id, originator_version"
        ).fetchall()
    return [(str(r[0]), r[1], r[2] and bytes(r[2]), r[3] and bytes(r[3])) for r in rows]


def some_history(runtime: Runtime) -> list[UUID]:
    """Three runs (one with output), and a project with a task; the runs' ids."""
    engine = runtime.engine
    runs = [engine.submit_run(OWNER, f"task {n}").run_id for n in range(3)]
    _, lease = engine.claim_run(runs[0], RUNNER)
    engine.record_output(runs[0], RUNNER, lease.fencing_token, [("log", {"n": 1})] * 4)
    project, _ = engine.create_project(OWNER, "p", None, "main")
    engine.create_task(project.id, OWNER, "t", "")
    return runs


def forget_hashes(runtime: Runtime, where: str = "1 = 1") -> None:
    """What a store written before the chain looks like: events without hashes."""
    with runtime.db.transaction() as cur:
        cur.execute(
            f"UPDATE {runtime.db.events_table} SET prev_hash = NULL, hash = NULL WHERE {where}"
        )


def test_the_backfill_gives_old_events_the_hashes_they_would_have_had(runtime: Runtime) -> None:
    some_history(runtime)
    written = chains(runtime)
    assert all(prev is not None and digest is not None for *_, prev, digest in written)
    forget_hashes(runtime)

    hashed = backfill(runtime.db, page=2)  # several pages

    assert hashed == len(written)
    assert chains(runtime) == written
    assert backfill(runtime.db) == 0  # idempotent


def test_a_backfill_stopped_halfway_resumes_where_it_stopped(runtime: Runtime) -> None:
    runs = some_history(runtime)
    written = chains(runtime)
    forget_hashes(runtime)
    with runtime.db.transaction() as cur:  # what a backfill killed halfway had committed
        done = hash_stream(runtime.db, cur, runs[0])

    assert done == len([row for row in written if UUID(row[0]) == runs[0]]) == 6
    assert backfill(runtime.db) == len(written) - done
    assert chains(runtime) == written


def test_a_save_on_a_stream_not_hashed_yet_hashes_it_first(runtime: Runtime) -> None:
    runs = some_history(runtime)
    forget_hashes(runtime)
    runtime.engine.chain.forget()

    runtime.engine.cancel_run(runs[1], OWNER)

    rows = [row for row in chains(runtime) if UUID(row[0]) == runs[1]]
    assert [version for _, version, *_ in rows] == [1, 2]
    assert rows[1][2] == rows[0][3] is not None


def test_a_stream_with_a_missing_event_is_hashed_up_to_the_gap(runtime: Runtime) -> None:
    runs = some_history(runtime)
    key = runtime.db.id_param(runs[0])
    forget_hashes(runtime)
    with runtime.db.transaction() as cur:
        cur.execute(
            f"DELETE FROM {runtime.db.events_table} "
            "WHERE originator_id = ? AND originator_version = 3",
            (key,),
        )

    backfill(runtime.db)

    rows = [row for row in chains(runtime) if UUID(row[0]) == runs[0]]
    assert [(v, digest is not None) for _, v, _, digest in rows] == [
        (1, True),
        (2, True),
        (4, False),
        (5, False),
        (6, False),
    ]
