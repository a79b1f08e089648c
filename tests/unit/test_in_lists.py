"""adapters.db.in_lists: values in `IN (…)` chunks under SQLite's parameter limit."""

from __future__ import annotations

from adapters.db import IN_LIST, in_lists


def test_values_come_in_order_in_chunks_of_at_most_the_limit_each_with_its_marks() -> None:
    values = [f"run-{i}" for i in range(2 * IN_LIST + 3)]

    chunks = list(in_lists(values))

    assert [len(chunk) for chunk, _ in chunks] == [IN_LIST, IN_LIST, 3]
    assert [v for chunk, _ in chunks for v in chunk] == values
    assert all(marks == ", ".join(["?"] * len(chunk)) for chunk, marks in chunks)
    assert IN_LIST < 999  # SQLite's oldest limit of parameters per statement


def test_no_values_make_no_chunk() -> None:
    assert list(in_lists([])) == []
    assert list(in_lists(iter(()))) == []
