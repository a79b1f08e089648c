"""Commands decided on the event loop (api/service/loop_commands.py, Engine.update_soon) on a
SQLite file and a real PostgreSQL: the same answers, events and chain as in the thread pool,
and whatever cannot be decided there runs in the pool as before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import pytest

from adapters.ledger_verify import verify_store
from api.service import loop_commands
from api.service.engine import SNAPSHOT_EVERY, Engine
from api.service.results import Appended
from api.service.runtime import Runtime
from domain.errors import StaleLease
from domain.receipts import CURRENT_RECEIPT, Receipt, ReceiptTakenOver
from domain.runs import Run
from tests.integration.test_store import all_events, claimed_run

RUNNER = "runner-1"


def output(engine: Engine, token: int, n: int = 1) -> Callable[[Run, datetime], None]:
    """record_output's decision for n log lines."""
    return engine.output_decision(RUNNER, token, [("log", {"i": i}) for i in range(n)])


class Soon:
    """Counts how each command went: decided on the loop, or handed to the pool."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on_loop = self.in_pool = 0
        update_soon, update, again = engine.update_soon, engine._update, engine.update_again
        self.again = 0

        def counting_soon(*args: Any) -> bool:
            went = update_soon(*args)
            self.on_loop += went
            return went

        def counting_update(*args: Any) -> Appended:
            self.in_pool += 1
            return update(*args)

        def counting_again(*args: Any) -> Appended:
            self.in_pool += 1
            self.again += 1
            return again(*args)

        monkeypatch.setattr(engine, "update_soon", counting_soon)
        monkeypatch.setattr(engine, "_update", counting_update)
        monkeypatch.setattr(engine, "update_again", counting_again)


def run_commands(
    engine: Engine, run_id: UUID, decisions: list[Any], hold_writes: bool = False
) -> list[Any]:
    """Each decision as one command through loop_commands.update, all at once on one loop;
    answers (or errors) in order. `hold_writes`: no group is written until every command
    has been started (so that none finds the run free again meanwhile)."""

    async def main() -> list[Any]:
        if hold_writes:
            engine.commits.turn.acquire()
        calls = [asyncio.ensure_future(loop_commands.update(engine, run_id, d)) for d in decisions]
        if hold_writes:
            await asyncio.sleep(0.2)  # every command has gone its way by now
            engine.commits.turn.release()
        return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(main())


def test_a_cached_runs_commands_are_decided_on_the_loop_with_the_pools_answers(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    soon = Soon(engine, monkeypatch)

    answers = [run_commands(engine, run_id, [output(engine, token, n)])[0] for n in (1, 3, 2)]

    assert soon.on_loop == 3 and soon.in_pool == 0
    mine = [r for r in all_events(runtime.db) if r.run_id == run_id]
    assert [r.sequence for r in mine] == list(range(1, 9))
    assert [(a.sequence, a.position) for a in answers] == [
        (mine[i].sequence, mine[i].position) for i in (2, 5, 7)
    ]
    assert all(a.status == engine.get_run(run_id).status for a in answers)
    report = verify_store(runtime.db, ("run", str(run_id)))
    assert report.ok, report.failures
    assert engine.get_run(run_id).version == 8  # the cache holds what was saved


def test_commands_on_one_run_at_once_take_turns_through_the_pool(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    soon = Soon(engine, monkeypatch)

    decisions = [output(engine, token) for _ in range(4)]
    answers = run_commands(engine, run_id, decisions, hold_writes=True)

    # The first holds the run while its save is queued; the others wait their turn in
    # the pool rather than on the loop.
    assert soon.on_loop == 1 and soon.in_pool == 3
    assert sorted(a.sequence for a in answers) == [3, 4, 5, 6]
    assert verify_store(runtime.db, ("run", str(run_id))).ok


def test_a_save_that_meets_another_processs_event_is_decided_again_in_the_pool(
    runtime: Runtime, second_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    second_runtime.engine.record_output(run_id, RUNNER, token, [("log", {"by": "b"})])
    soon = Soon(engine, monkeypatch)

    [answer] = run_commands(engine, run_id, [output(engine, token)])

    # refused by the store, then decided again on the run read afresh, one try counted
    assert soon.on_loop == 1 and soon.in_pool == 1 and soon.again == 1
    assert answer.sequence == 4
    positions = [r.position for r in all_events(runtime.db)]
    assert positions == list(range(1, len(positions) + 1))  # the refusal used no position
    assert verify_store(runtime.db, ("run", str(run_id))).ok


def test_a_refused_command_is_refused_from_the_pool_and_changes_nothing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    soon = Soon(engine, monkeypatch)

    [answer] = run_commands(engine, run_id, [output(engine, token + 1)])

    assert isinstance(answer, StaleLease)
    assert soon.on_loop == 0 and soon.in_pool == 1  # decided again on the run read afresh
    assert engine.get_run(run_id).version == 2
    # and the run is still free for the next command on the loop
    [ok] = run_commands(engine, run_id, [output(engine, token)])
    assert ok.sequence == 3 and soon.on_loop == 1


def test_a_run_this_process_has_not_seen_goes_to_the_pool(
    runtime: Runtime, second_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, token = claimed_run(second_runtime.engine)
    engine = runtime.engine
    soon = Soon(engine, monkeypatch)

    [answer] = run_commands(engine, run_id, [output(engine, token)])

    assert soon.on_loop == 0 and soon.in_pool == 1 and answer.sequence == 3
    [again] = run_commands(engine, run_id, [output(engine, token)])  # now it is cached
    assert soon.on_loop == 1 and again.sequence == 4


def under_receipt(engine: Engine, run_id: UUID, decide: Any, receipt: Receipt) -> Any:
    """One command through loop_commands.update under an idempotent request's receipt."""

    async def main() -> Any:
        CURRENT_RECEIPT.set(receipt)  # this task's context, as idempotent() sets it
        return await loop_commands.update(engine, run_id, decide)

    try:
        return asyncio.run(main())
    except Exception as error:
        return error


def test_under_a_receipt_the_loop_decided_save_records_the_requests_result(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    attempt = runtime.idempotency.reserve(RUNNER, "key-1", "fingerprint").attempt
    assert attempt is not None
    soon = Soon(engine, monkeypatch)

    receipt = Receipt(RUNNER, "key-1", attempt)
    answer = under_receipt(engine, run_id, output(engine, token), receipt)

    assert soon.on_loop == 1 and answer.sequence == 3
    with runtime.db.reading() as cur:
        cur.execute("SELECT result FROM idempotency_keys WHERE key = ?", ("key-1",))
        [(result,)] = cur.fetchall()
    assert orjson.loads(result) == {"id": str(run_id), "status": answer.status, "sequence": 3}

    # A receipt taken over meanwhile (a retry of the request) refuses the save, alone.
    lost = Receipt(RUNNER, "key-1", "an-attempt-taken-over")
    refused = under_receipt(engine, run_id, output(engine, token), lost)
    assert isinstance(refused, ReceiptTakenOver)
    assert engine.get_run(run_id).version == 3
    assert [r.sequence for r in runtime.db.run_events(run_id, after=0)] == [1, 2, 3]


def test_a_command_that_passes_a_snapshot_boundary_is_decided_on_the_loop(
    runtime: Runtime, second_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The snapshot is taken once the save is written and stored by the snapshots' thread:
    # the command neither goes to the pool nor waits for the snapshot's transaction.
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    below = SNAPSHOT_EVERY - 2 - engine.get_run(run_id).version
    engine.record_output(run_id, RUNNER, token, [("log", {"i": i}) for i in range(below)])
    assert engine.get_run(run_id).version == SNAPSHOT_EVERY - 2
    soon = Soon(engine, monkeypatch)

    [answer] = run_commands(engine, run_id, [output(engine, token, 5)])

    assert soon.on_loop == 1 and soon.in_pool == 0
    assert answer.sequence == SNAPSHOT_EVERY + 3
    engine._snapshotting.submit(lambda: None).result(10)  # what was queued before is stored
    assert engine.snapshots is not None
    assert [s.originator_version for s in engine.snapshots.get(run_id)] == [SNAPSHOT_EVERY + 3]
    # the snapshot is the run as saved: a process that never saw the run loads it from there
    fresh, here = second_runtime.engine.get_run(run_id), engine.get_run(run_id)
    assert fresh.version == here.version == SNAPSHOT_EVERY + 3
    assert {k: v for k, v in vars(fresh).items() if k != "_pending_events"} == {
        k: v for k, v in vars(here).items() if k != "_pending_events"
    }
    assert verify_store(runtime.db, ("run", str(run_id))).ok
