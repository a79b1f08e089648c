"""Group commit (adapters/group_commit.py) on a SQLite file and a real PostgreSQL.

Commands on different runs that arrive together are stored in one transaction. The writer's
turn is held while the commands queue up, so that the test knows the group they form; what
each command answers, what the store holds and what the followers are handed are then
checked against each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from adapters.db import StoredRow
from adapters.group_commit import Append
from adapters.ledger_verify import verify_store
from api.service.engine import RUN_LOCK_STRIPES, Engine
from api.service.results import Appended
from api.service.runtime import Runtime
from domain.receipts import CURRENT_RECEIPT, Receipt, ReceiptTakenOver
from tests.integration.test_store import all_events, claimed_run

RUNNER = "runner-1"


class Groups:
    """Wraps the engine's recorder's group write: what each group held, and how it ended."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.written: list[list[Append]] = []
        write = engine.recorder.append_group  # type: ignore[attr-defined]

        def counting(group: list[Append], writer: bool = False) -> None:
            self.written.append(list(group))
            write(group, writer)

        monkeypatch.setattr(engine.recorder, "append_group", counting)


@contextmanager
def queued_together(engine: Engine, commands: list[Callable[[], Any]]) -> Iterator[list[Any]]:
    """Run the commands in threads of their own while the writer's turn is held, until all
    of them wait in the queue; then let the writer go. Yields each one's answer (or error)."""
    answers: list[Any] = [None] * len(commands)

    def run(i: int, command: Callable[[], Any]) -> None:
        try:
            answers[i] = command()
        except Exception as error:
            answers[i] = error

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(commands)]
    with engine.commits.turn:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while engine.commits.queued < len(commands):
            assert time.monotonic() < deadline, f"the commands never queued up: {answers}"
            time.sleep(0.005)
    for t in threads:
        t.join(timeout=30)
    yield answers


def runs_apart(engine: Engine, n: int) -> list[tuple[UUID, int]]:
    """n claimed runs whose commands never wait for one another's run lock: the engine's
    run locks are striped, and two runs of one stripe would take turns (the second could not
    queue while the first waits for the writer)."""
    runs: list[tuple[UUID, int]] = []
    stripes: set[int] = set()
    while len(runs) < n:
        run = claimed_run(engine)
        stripe = hash(run[0]) % RUN_LOCK_STRIPES
        if stripe not in stripes:
            stripes.add(stripe)
            runs.append(run)
    return runs


def output(engine: Engine, run: tuple[UUID, int], n: int = 1) -> Callable[[], Appended]:
    """A command appending n output events to a claimed run."""
    run_id, token = run
    return lambda: engine.record_output(
        run_id, RUNNER, token, [("log", {"i": i}) for i in range(n)]
    )


def test_commands_that_arrive_together_share_one_transaction_and_keep_their_answers(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    runs = runs_apart(engine, 12)
    before = runtime.db.head()
    handed: list[StoredRow] = []
    engine.followers.append(handed.extend)
    groups = Groups(engine, monkeypatch)

    sizes = [1 + i % 3 for i in range(len(runs))]  # 1, 2 or 3 events each
    commands = [output(engine, run, n) for run, n in zip(runs, sizes, strict=True)]
    with queued_together(engine, commands) as answers:
        pass

    assert [len(g) for g in groups.written] == [len(runs)]  # one transaction
    stored = [r for r in all_events(runtime.db) if r.position > before]
    assert [r.position for r in stored] == list(range(before + 1, before + 1 + sum(sizes)))
    assert handed == stored  # in commit order, each once
    for (run_id, _), n, answer in zip(runs, sizes, answers, strict=True):
        assert isinstance(answer, Appended)
        mine = [r for r in stored if r.run_id == run_id]
        assert [r.sequence for r in mine] == list(range(3, 3 + n))
        assert answer.sequence == mine[-1].sequence and answer.position == mine[-1].position
    # Each run's hash chain links its events on from its own last event.
    for (run_id, _), n in zip(runs, sizes, strict=True):
        report = verify_store(runtime.db, ("run", str(run_id)))
        assert report.ok, report.failures
        assert report.events == 2 + n


def test_a_conflict_in_a_group_fails_only_its_own_append(
    runtime: Runtime, second_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    runs = runs_apart(engine, 3)
    stale = runs[1]
    # Another process appends to the middle run: this process's copy of it is stale, so
    # its first save of that run is refused by the store (and then decided again).
    second_runtime.engine.record_output(stale[0], RUNNER, stale[1], [("log", {"by": "b"})])
    groups = Groups(engine, monkeypatch)

    with queued_together(engine, [output(engine, run) for run in runs]) as answers:
        pass

    first = groups.written[0]
    assert len(first) == 3
    assert [type(a.error) if a.error else None for a in first] == [None, IntegrityError, None]
    assert [a.positions is not None for a in first] == [True, False, True]
    assert [a.aggregate_id for a in groups.written[1]] == [stale[0]]  # decided again, alone
    assert [a.sequence for a in answers] == [3, 4, 3]
    positions = [r.position for r in all_events(runtime.db)]
    assert positions == list(range(1, len(positions) + 1))  # the refusal used no position


def test_a_receipt_taken_over_fails_only_its_own_command(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    runs = runs_apart(engine, 3)
    groups = Groups(engine, monkeypatch)
    taken = Receipt("alice", "a-key-nobody-holds", "attempt-1")

    def under_lost_receipt() -> Appended:
        CURRENT_RECEIPT.set(taken)  # this thread's context only
        return output(engine, runs[0])()

    commands = [under_lost_receipt, output(engine, runs[1]), output(engine, runs[2])]
    with queued_together(engine, commands) as answers:
        pass

    assert [len(g) for g in groups.written] == [3]
    assert isinstance(answers[0], ReceiptTakenOver)
    assert [a.sequence for a in answers[1:]] == [3, 3]
    assert engine.get_run(runs[0][0]).version == 2  # nothing of it was stored
    assert [r.sequence for r in runtime.db.run_events(runs[0][0], after=0)] == [1, 2]


def test_the_writer_keeps_one_connection_while_groups_follow_and_gives_it_back_idle(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not runtime.db.postgres:
        pytest.skip("the PostgreSQL recorder's connection")
    engine = runtime.engine
    recorder: Any = engine.recorder
    runs = runs_apart(engine, 3)
    backends: list[int] = []
    write = recorder._append_group

    def noting(group: list[Append], writer: bool = False) -> None:
        write(group, writer)
        backends.append(recorder._kept_conn.info.backend_pid)

    monkeypatch.setattr(recorder, "_append_group", noting)
    monkeypatch.setattr(engine.commits, "_max_group", 1)  # three groups, one by one
    with queued_together(engine, [output(engine, run) for run in runs]) as answers:
        pass
    assert all(isinstance(a, Appended) for a in answers), answers
    # One backend for the three (the pool alone hands its connections out in turn).
    assert len(backends) == 3 and len(set(backends)) == 1, backends
    # Nothing queued: the pool has it back (an idle server keeps none of its own), once the
    # writer (a pool thread, after the answers) has seen the queue empty.
    deadline = time.monotonic() + 10
    while recorder._kept is not None:
        assert time.monotonic() < deadline, "the writer kept its connection"
        time.sleep(0.005)
    assert recorder._kept_conn is None
    stats = recorder.datastore.pool.get_stats()
    assert stats["pool_size"] == stats["pool_available"]


def test_a_kept_connection_that_died_is_replaced_and_the_append_stored_once(
    runtime: Runtime,
) -> None:
    if not runtime.db.postgres:
        pytest.skip("the PostgreSQL recorder's connection")
    engine = runtime.engine
    recorder: Any = engine.recorder
    run = runs_apart(engine, 1)[0]
    before = runtime.db.head()
    # The writer's connection, kept (as between groups under load), then killed by the
    # server: its next group fails on it, and is written again on a new one.
    with engine.commits.turn, recorder._writer_connection() as conn:
        dead = conn.info.backend_pid
    assert recorder._kept is not None
    with runtime.db.reading() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (dead,))
    answer = output(engine, run)()
    assert isinstance(answer, Appended)
    stored = [r for r in all_events(runtime.db) if r.position > before]
    assert [(r.run_id, r.sequence) for r in stored] == [(run[0], 3)]
    assert recorder._kept is None  # given back once the writer (this thread) was idle
