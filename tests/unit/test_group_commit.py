"""GroupCommit's turn-taking, with a writer that stands in for the store (the stores
themselves are in tests/integration/test_group_commit.py)."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import OperationalError, StoredEvent

from adapters.group_commit import Append, GroupCommit


def append(aggregate: UUID, version: int = 1) -> Append:
    """One event of `aggregate` at `version`."""
    return Append(aggregate, [StoredEvent(aggregate, version, "t", b"{}")])


class Store:
    """Gives positions in order; fails a group when told to."""

    def __init__(self) -> None:
        self.position = 0
        self.groups: list[list[Append]] = []
        self.committed: list[Append] = []
        self.fail: Exception | None = None

    def write(self, group: list[Append]) -> None:
        self.groups.append(list(group))
        if self.fail is not None:
            raise self.fail
        for a in group:
            a.positions = list(range(self.position + 1, self.position + 1 + len(a.events)))
            self.position += len(a.events)

    def told(self, group: list[Append]) -> None:
        self.committed += group


def together(commits: GroupCommit, items: list[Append]) -> list[Any]:
    """Append each item from a thread of its own, all queued before the writer goes."""
    answers: list[Any] = [None] * len(items)

    def run(i: int) -> None:
        try:
            answers[i] = commits.append(items[i])
        except Exception as error:
            answers[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    with commits.turn:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while commits.queued < len(items):
            assert time.monotonic() < deadline
            time.sleep(0.001)
    for t in threads:
        t.join(timeout=10)
    return answers


def test_a_lone_append_is_written_at_once_as_a_group_of_one() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told)
    item = append(uuid4())
    assert commits.append(item) == [1]
    assert store.groups == [[item]] and store.committed == [item]


def test_appends_queued_together_are_one_group_each_with_its_own_positions() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told)
    items = [append(uuid4()) for _ in range(8)]
    answers = together(commits, items)
    assert len(store.groups) == 1 and len(store.groups[0]) == 8
    assert sorted(p for a in answers for p in a) == list(range(1, 9))
    assert [a.answer()[0] for a in store.committed] == list(range(1, 9))  # commit order


def test_a_group_holds_one_append_per_aggregate_and_at_most_max_group() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told, max_group=3)
    same = uuid4()
    items = [append(same, 1), append(same, 2), *(append(uuid4()) for _ in range(4))]
    answers = together(commits, items)
    assert all(isinstance(a, list) for a in answers)
    for group in store.groups:
        assert len(group) <= 3
        assert len({a.aggregate_id for a in group}) == len(group)
    assert sum(map(len, store.groups)) == 6


def test_a_failed_transaction_fails_every_member_and_the_next_group_is_written() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told)
    store.fail = OperationalError("the database went away")
    answers = together(commits, [append(uuid4()) for _ in range(3)])
    assert [type(a) for a in answers] == [OperationalError] * 3
    assert store.committed == []
    store.fail = None
    assert commits.append(append(uuid4())) == [1]


def test_a_member_refused_by_the_store_fails_alone() -> None:
    store = Store()

    def refuse_the_second(group: list[Append]) -> None:
        store.write(group)
        group[1].positions, group[1].error = None, KeyError("refused")

    commits = GroupCommit(refuse_the_second, store.told)
    answers = together(commits, [append(uuid4()) for _ in range(3)])
    assert [type(a) for a in answers] == [list, KeyError, list]
    assert len(store.committed) == 2
    with pytest.raises(KeyError):
        store.groups[0][1].answer()


def submitted(commits: GroupCommit, item: Append) -> threading.Event:
    """Submit the item as the event loop does; the event is set once its callback ran."""
    called = threading.Event()

    def written() -> None:
        assert item.positions is not None or item.error is not None  # answered first
        called.set()

    commits.submit(item, written)
    return called


def test_a_submitted_append_is_written_by_a_pool_thread_and_its_caller_is_called_back() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told)
    item = append(uuid4())
    assert submitted(commits, item).wait(10)
    assert item.answer() == [1] and store.committed == [item]
    assert commits.append(append(uuid4())) == [2]  # the writing was handed back: idle again


def test_submitted_and_waiting_appends_share_a_group_and_the_rest_is_carried_on() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told, max_group=4)
    loop_items = [append(uuid4()) for _ in range(6)]
    with commits.turn:  # the first submit's writer waits here while the rest queue
        called = [submitted(commits, item) for item in loop_items]
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(commits.append(append(uuid4()))))
        waiting.start()
        deadline = time.monotonic() + 10
        while commits.queued < 7:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    waiting.join(10)
    assert all(c.wait(10) for c in called) and len(answers) == 1
    assert [len(g) for g in store.groups] == [4, 3]  # the second group without a new caller
    assert sorted(p for a in store.committed for p in a.answer()) == list(range(1, 8))


def test_a_callback_that_fails_does_not_fail_its_neighbours() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told)
    with commits.turn:
        commits.submit(append(uuid4()), lambda: 1 / 0)  # type: ignore[func-returns-value]
        second = submitted(commits, append(uuid4()))
        deadline = time.monotonic() + 10
        while commits.queued < 2:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    assert second.wait(10)
    assert commits.append(append(uuid4())) == [3]


def test_a_submitted_append_is_freed_without_the_garbage_collector() -> None:
    # submit's caller keeps the append, to read its answer, in the callback it gives (as
    # Engine.update_soon does): once told, the append lets go of the callback, so no cycle
    # is left for the collector (which, under load, took tens of µs per command).
    def write(group: list[Append]) -> None:
        for a in group:
            a.positions = [1]

    commits = GroupCommit(write, lambda group: None)
    told = threading.Event()
    answers: list[list[int]] = []

    def submit_one() -> weakref.ref[Append]:
        item = append(uuid4())

        def written() -> None:
            answers.append(item.answer())
            told.set()

        commits.submit(item, written)
        return weakref.ref(item)

    gc.disable()
    try:
        gone = submit_one()
        assert told.wait(10)
        deadline = time.monotonic() + 10  # (the writer's thread lets go of its group)
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert gone() is None
    finally:
        gc.enable()
    assert answers == [[1]]


def test_idle_is_told_once_the_writer_leaves_nothing_queued_not_between_groups() -> None:
    store = Store()
    seen: list[tuple[int, bool]] = []  # (groups written so far, turn held) at each idle
    commits: GroupCommit

    def idle() -> None:
        seen.append((len(store.groups), commits.turn.locked()))

    commits = GroupCommit(store.write, store.told, max_group=2, idle=idle)
    answers = together(commits, [append(uuid4()) for _ in range(5)])
    assert [len(g) for g in store.groups] == [2, 2, 1]
    assert all(isinstance(a, list) for a in answers)
    settled(lambda: seen == [(3, True)])  # after the last group, in the writer's turn
    assert commits.append(append(uuid4())) == [6]
    assert seen == [(3, True), (4, True)]  # (the lone writer's own thread: at once)


def test_a_failing_idle_callback_is_logged_never_an_appends_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store()

    def idle() -> None:
        raise RuntimeError("cannot let go")

    commits = GroupCommit(store.write, store.told, idle=idle)
    assert commits.append(append(uuid4())) == [1]
    assert commits.append(append(uuid4())) == [2]
    assert "idle callback failed" in caplog.text


def settled(done: Callable[[], bool]) -> None:
    """Wait (up to 10 s) for what a pool thread does after the last answer."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def write_one_group(commits: GroupCommit, store: Store, n: int) -> None:
    """A group of n, queued together: the last group's size, which _gather waits for."""
    together(commits, [append(uuid4()) for _ in range(n)])
    assert len(store.groups[-1]) == n


def test_with_other_processes_appending_a_group_waits_for_as_many_as_the_last() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told, linger=30.0)
    write_one_group(commits, store, 3)
    commits.others_writing()
    # One command alone: its writer waits for company, until three are queued (not the
    # 30 s linger: the third's arrival wakes it).
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(commits.append(append(uuid4()))))
    first.start()
    settled(lambda: commits.queued >= 1)
    time.sleep(0.05)
    assert len(store.groups) == 1  # still gathering
    rest = [threading.Thread(target=commits.append, args=(append(uuid4()),)) for _ in range(2)]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join(timeout=10)
        assert not t.is_alive()
    assert [len(g) for g in store.groups] == [3, 3]


def test_the_wait_for_company_ends_after_linger_with_whoever_came() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told, linger=0.05)
    write_one_group(commits, store, 4)
    commits.others_writing()
    started = time.monotonic()
    assert commits.append(append(uuid4())) == [5]  # nobody came: alone, after 0.05 s
    assert time.monotonic() - started >= 0.05
    assert [len(g) for g in store.groups] == [4, 1]


def test_after_a_pause_longer_than_linger_a_lone_command_does_not_wait() -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told, linger=30.0)
    write_one_group(commits, store, 3)
    settled(lambda: commits._quiet_since is not None)
    commits._quiet_since -= 31.0  # the writer has had nothing to do for longer than linger
    commits.others_writing()
    done = threading.Thread(target=commits.append, args=(append(uuid4()),))
    done.start()
    done.join(timeout=10)
    assert not done.is_alive()  # (else it waits out the 30 s linger)


@pytest.mark.parametrize("company", [False, True])
def test_no_wait_while_appending_alone_or_after_a_lone_command(company: bool) -> None:
    store = Store()
    commits = GroupCommit(store.write, store.told, linger=30.0)
    if company:  # the last group was one: a lone command never waits
        commits.others_writing()
        assert commits.append(append(uuid4())) == [1]
    else:  # a bigger last group, but no other process seen appending
        write_one_group(commits, store, 3)
    done = threading.Thread(target=commits.append, args=(append(uuid4()),))
    done.start()
    done.join(timeout=10)
    assert not done.is_alive()
