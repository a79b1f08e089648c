"""Tampering with a store directly (SQL on the events table, as an intruder with database
access would) is caught by `GET /api/runs/{id}/audit`, naming the run's first bad
sequence; a history cut off at its end or rewritten with recomputed hashes is also caught
through the Merkle log and a checkpoint the auditor kept from before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from adapters.chain import event_hash
from tests.e2e.audit_helpers import (
    audit,
    b64,
    check_signed_note,
    checkpoint_covering,
    covered_audit,
    events_table,
    mth,
    run_rows,
    verify_consistency,
)
from tests.e2e.helpers import global_history
from tests.e2e.runs_helpers import append, claim, history, log, submit
from tests.e2e.test_audit_chain import check_chain
from tests.support import ALICE, RUNNER, Server


class Scene:
    """A server whose run `run_id` has 5 events (submitted, claimed, three logs), then a
    second run; and the checkpoint an auditor kept once the log covered them."""

    def __init__(self, url: str, server: Server, alice: httpx.Client) -> None:
        self.url, self.server, self.alice = url, server, alice
        self.run_id = str(submit(alice, task="audit me")["run_id"])
        with server.client(RUNNER) as runner:
            token = claim(runner, self.run_id)["fencing_token"]
            append(runner, self.run_id, token, log("line-1"), log("line-2"), log("line-3"))
        submit(alice, task="another run")
        self.events = len(global_history(alice))
        self.kept = checkpoint_covering(alice, self.events)
        assert covered_audit(alice, self.run_id)["valid"] is True

    def rows(self) -> list[tuple[Any, ...]]:
        with events_table(self.url) as (db, table), db.reading() as cur:
            return run_rows(cur, db, table, self.run_id)

    def execute(self, sql: str, *params: Any) -> None:
        with events_table(self.url) as (db, table), db.transaction() as cur:
            cur.execute(sql.format(table=table, pos=db.position_column), params)


@pytest.fixture
def scene(store_url: str, tmp_path: Path) -> Iterator[Scene]:
    env = {"RUNLEDGER_CHECKPOINT_EVENTS": "1", "RUNLEDGER_CHECKPOINT_SECONDS": "3600"}
    server = Server(store_url, tmp_path / "data", **env).start()
    try:
        with server.client(ALICE) as alice:
            yield Scene(store_url, server, alice)
    finally:
        server.kill()


def first_bad(scene: Scene) -> dict[str, Any]:
    body = audit(scene.alice, scene.run_id)
    assert body["valid"] is False, body
    return dict(body["first_bad"])


def caught_through_the_kept_checkpoint(scene: Scene) -> None:
    """The kept checkpoint is genuine and the log still extends it, yet the events read
    over HTTP no longer give its root: the history changed after it was signed."""
    kept = scene.kept
    key = scene.alice.get("/api/audit/public-key").json()
    name, public = key["key_name"], b64(key["public_key"])
    assert check_signed_note(kept["signed_note"], name, public)[1] == kept["tree_size"]
    submit(scene.alice, task="the log goes on")
    latest = checkpoint_covering(scene.alice, kept["tree_size"] + 1)
    proof = scene.alice.get(
        "/api/audit/proofs/consistency",
        params={"from": kept["tree_size"], "to": latest["tree_size"]},
    ).json()["hashes"]
    assert verify_consistency(
        kept["tree_size"],
        latest["tree_size"],
        b64(kept["root_hash"]),
        b64(latest["root_hash"]),
        [b64(h) for h in proof],
    )
    events = sorted(global_history(scene.alice), key=lambda e: e["position"])
    leaves = [bytes.fromhex(e["hash"]) for e in events][: kept["tree_size"]]
    assert mth(leaves) != b64(kept["root_hash"])


def test_one_changed_byte_in_an_events_data_is_a_hash_mismatch(scene: Scene) -> None:
    position, version, state, *_ = scene.rows()[3]
    changed = bytes(state).replace(b"line-2", b"line-X")
    assert changed != bytes(state) and len(changed) == len(bytes(state))
    scene.execute("UPDATE {table} SET state = ? WHERE {pos} = ?", changed, position)
    assert first_bad(scene) == {"sequence": version, "reason": "hash_mismatch"}


def test_a_deleted_event_is_a_missing_sequence(scene: Scene) -> None:
    position, version, *_ = scene.rows()[2]
    scene.execute("DELETE FROM {table} WHERE {pos} = ?", position)
    assert first_bad(scene) == {"sequence": version, "reason": "missing_sequence"}


def test_a_history_cut_off_at_its_end_is_caught_by_the_log(scene: Scene) -> None:
    rows = scene.rows()
    position, version, *_ = rows[-1]
    scene.execute("DELETE FROM {table} WHERE {pos} = ?", position)
    assert first_bad(scene) == {"sequence": version, "reason": "missing_sequence"}
    assert audit(scene.alice, scene.run_id)["events"] == len(rows) - 1
    check_chain(history(scene.alice, scene.run_id))  # what is left links up
    caught_through_the_kept_checkpoint(scene)


def test_a_run_rewritten_with_recomputed_hashes_is_caught_by_the_log(scene: Scene) -> None:
    rows = scene.rows()
    run_id = UUID(scene.run_id)
    with events_table(scene.url) as (db, table), db.transaction() as cur:
        topics = dict(
            cur.execute(
                f"SELECT originator_version, topic FROM {table} WHERE originator_id = ?",
                (run_id if db.postgres else run_id.hex,),
            ).fetchall()
        )
        prev = b"\x00" * 32
        for position, version, state, *_ in rows:
            forged = bytes(state).replace(b"audit me", b"audit us").replace(b"line-", b"LINE-")
            digest = event_hash(run_id, version, topics[version], forged, prev)
            cur.execute(
                f"UPDATE {table} SET state = ?, prev_hash = ?, hash = ? "
                f"WHERE {db.position_column} = ?",
                (forged, prev, digest, position),
            )
            prev = digest
    check_chain(history(scene.alice, scene.run_id))  # the chain alone links up again
    assert first_bad(scene) == {"sequence": 1, "reason": "hash_mismatch"}
    caught_through_the_kept_checkpoint(scene)


@pytest.mark.parametrize("table", ["merkle_bundles", "merkle_positions"])
def test_damage_to_the_log_itself_is_a_verdict_not_an_error(scene: Scene, table: str) -> None:
    # The Merkle log's own rows deleted (an intruder covering tracks, or a broken disk): the
    # audit still answers, and says the run's events are no longer all in the log.
    scene.execute(f"DELETE FROM {table}")
    assert first_bad(scene) == {"sequence": 1, "reason": "not_in_log"}
