"""Histories, tampering and the audit commands, for the tests of verify, export and import."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from adapters import audit_store, merkle, merkle_tables
from adapters.backfill import hash_stream
from adapters.db import Cursor
from api import cli
from api.service.runtime import Runtime

OWNER, RUNNER = "alice", "runner-1"


def some_history(runtime: Runtime) -> dict[str, Any]:
    """Three runs (the first with output, the second reviewed), a project with a task
    started as a run; their ids."""
    engine = runtime.engine
    runs = [engine.submit_run(OWNER, f"task {n}").run_id for n in range(3)]
    _, lease = engine.claim_run(runs[0], RUNNER)
    engine.record_output(runs[0], RUNNER, lease.fencing_token, [("log", {"n": 1})] * 4)
    _, lease = engine.claim_run(runs[1], RUNNER)
    engine.report_outcome(runs[1], RUNNER, lease.fencing_token, "changes", tree_hash="abc")
    engine.review_run(runs[1], OWNER, approved=False, request_changes=True, comment="more")
    project, _ = engine.create_project(OWNER, "p", None, "main")
    engine.create_task(project.id, OWNER, "t", "do it")
    task_id = next(iter(engine.get_project(project.id).tasks))
    engine.move_task(project.id, OWNER, task_id, "ready")
    engine.start_task(project.id, OWNER, task_id)
    runtime.catch_up()
    return {"runs": runs, "project": project.id}


def events(runtime: Runtime) -> list[tuple[Any, ...]]:
    """Every stored event as (stream, version, topic, state, prev_hash, hash), commit order."""
    rows, after = [], 0
    while page := runtime.db.events_after(after, 1000):
        rows += [(r.run_id, r.sequence, r.topic, r.state, r.prev_hash, r.hash) for r in page]
        after = page[-1].position
    return rows


def root_of(runtime: Runtime) -> tuple[int, bytes]:
    """The Merkle tree over every event's hash, in commit order: (size, root)."""
    hashes = [row[5] for row in events(runtime)]
    return len(hashes), merkle.mth(hashes)


def keep_checkpoint(runtime: Runtime, path: Path) -> Path:
    """A checkpoint of the history as it stands saved, as an auditor keeps one (from GET
    /api/audit/checkpoint)."""
    path.write_text(sign_now(runtime).note)
    return path


def sign_now(runtime: Runtime) -> audit_store.StoredCheckpoint:
    """The server's log brought up to date, and a checkpoint of it signed and kept now."""
    size = runtime.audit_log.catch_up()
    assert size == len(events(runtime))
    return runtime.audit_log.sign(size)


def cover_tracks(runtime: Runtime) -> None:
    """What someone who changed the events can do next: recompute the Merkle log from them
    and drop the checkpoints that no longer match (without the key, none can be re-signed)."""
    runtime.audit_log.rebuild()
    with runtime.db.transaction() as cur:
        cur.execute("DELETE FROM checkpoints")


# -- tampering, straight in the database ------------------------------------------------


def change_one_byte(runtime: Runtime, stream: UUID, version: int) -> None:
    """One byte of one event's data changed (its actor's first letter)."""
    state = _state(runtime, stream, version)
    at = state.index(b'"actor":"') + len(b'"actor":"')
    changed = state[:at] + bytes([state[at] ^ 1]) + state[at + 1 :]
    _execute(
        runtime,
        "UPDATE {t} SET state = ? WHERE originator_id = ? AND originator_version = ?",
        changed,
        stream,
        version,
    )


def delete_event(runtime: Runtime, stream: UUID, version: int) -> None:
    """One event deleted."""
    where = "originator_id = ? AND originator_version = ?"
    _execute(runtime, f"DELETE FROM {{t}} WHERE {where}", stream, version)


def last_version(runtime: Runtime, stream: UUID) -> int:
    """A stream's last version."""
    return max(row[1] for row in events(runtime) if row[0] == stream)


def rewrite_run(runtime: Runtime, stream: UUID) -> None:
    """A whole run's history rewritten (its task) with its chain recomputed to match."""
    state = _state(runtime, stream, 1)
    _execute(
        runtime,
        "UPDATE {t} SET state = ? WHERE originator_id = ? AND originator_version = 1",
        state.replace(b'"task":"task', b'"task":"TASK'),
        stream,
    )
    _execute(
        runtime, "UPDATE {t} SET prev_hash = NULL, hash = NULL WHERE originator_id = ?", stream
    )
    length = last_version(runtime, stream)
    with runtime.db.transaction() as cur:
        assert hash_stream(runtime.db, cur, stream) == length


def _state(runtime: Runtime, stream: UUID, version: int) -> bytes:
    table = runtime.db.events_table
    with runtime.db.reading() as cur:
        row = cur.execute(
            f"SELECT state FROM {table} WHERE originator_id = ? AND originator_version = ?",
            (runtime.db.id_param(stream), version),
        ).fetchone()
    assert row is not None
    return bytes(row[0])


def _execute(runtime: Runtime, sql: str, *params: Any) -> None:
    values = [runtime.db.id_param(p) if isinstance(p, UUID) else p for p in params]
    with runtime.db.transaction() as cur:
        assert cur.execute(sql.format(t=runtime.db.events_table), values).rowcount >= 1


# -- the commands ------------------------------------------------------------------------


def runledger(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """Run one `runledger` command in this process: its exit status and output lines."""
    capsys.readouterr()
    code = cli.main(list(argv))
    return code, capsys.readouterr().out.splitlines()


def failures(out: list[str]) -> list[str]:
    """The failure lines of a command's output (not its notes and verdict)."""
    return [line for line in out if not line.startswith("runledger ")]


TREE_KEYS = {
    "merkle_nodes": "level, idx",
    "merkle_bundles": "bundle",
    "merkle_positions": "leaf_index",
    "merkle_streams": "leaf_index",
    "merkle_head": "id",
}


def dump_tree(cur: Cursor) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the Merkle log's tree tables, in key order (bytes as bytes)."""
    assert set(TREE_KEYS) == set(merkle_tables.TREE_TABLES)
    return {
        table: [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in cur.execute(f"SELECT * FROM {table} ORDER BY {keys}").fetchall()
        ]
        for table, keys in TREE_KEYS.items()
    }
