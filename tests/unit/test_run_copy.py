"""Run.__deepcopy__: the engine decides every command on a copy of the cached run, made by
a walk of plain data faster than copy.deepcopy's; it must be as deep."""

from __future__ import annotations

import copy
from typing import Any

from domain.runs import Run
from tests.unit.helpers import claim, output, submit

REPORT = {"model": "m1", "input_tokens": 100, "output_tokens": 20}


def busy_run() -> Run:
    """A claimed run with nested state: a lease, an open gate, usage, output."""
    run = submit(agent="claude", max_attempts=3)
    claim(run)
    output(
        run,
        ("usage.reported", REPORT),
        ("gate.opened", {"gate_id": "g1", "kind": "question", "question": "which way?"}),
        ("log", {"line": "hello"}),
    )
    run.collect_events()
    return run


def nested(value: Any) -> list[Any]:
    """Every dict and list inside value (itself included)."""
    found: list[Any] = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found += nested(item)
    elif isinstance(value, list):
        found.append(value)
        for item in value:
            found += nested(item)
    return found


def test_the_copy_holds_the_same_state_as_the_library_copy() -> None:
    run = busy_run()
    assert run.lease and run.open_gates and run.usage  # the nested state is there
    fast = copy.deepcopy(run)
    assert type(fast) is Run
    assert vars(fast) == vars(run)


def test_the_copy_shares_no_dict_or_list_with_the_original() -> None:
    run = busy_run()
    fast = copy.deepcopy(run)
    mine = {id(x) for x in nested(vars(run))}
    assert mine and not mine & {id(x) for x in nested(vars(fast))}


def test_deciding_on_the_copy_leaves_the_original_as_it_was() -> None:
    run = busy_run()
    before = copy.deepcopy(run)
    fast = copy.deepcopy(run)
    output(fast, ("usage.reported", REPORT), ("log", {"line": "more"}))
    fast.lease["expires_at"] = "changed"
    assert vars(run) == vars(before)
    assert fast.version == run.version + 2
