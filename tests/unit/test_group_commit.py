"""GroupCommit's turn-taking, with a writer that stands in for the store (the stores
themselves are in tests/integration/test_group_commit.py)."""

from __future__ import annotations

import threading
import time
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
