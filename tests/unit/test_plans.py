"""Work plans as graphs: what a valid plan is, and the 400s that name what is wrong."""

from __future__ import annotations

import pytest

from domain.errors import Invalid
from domain.plans import MAX_SUBTASKS, check_plan, child_run_id, dependents, find_cycle


def sub(key: str, *deps: str, **extra: object) -> dict[str, object]:
    return {"key": key, "title": f"do {key}", "depends_on": list(deps), **extra}


def test_a_valid_plan_keeps_its_order_and_defaults_the_task_to_the_title() -> None:
    plan = check_plan([sub("b"), sub("a", "b", task="the a task")])

    assert [s["key"] for s in plan] == ["b", "a"]
    assert plan[0]["task"] == "do b"
    assert plan[1]["task"] == "the a task"
    assert plan[1]["depends_on"] == ["b"]


def test_an_empty_plan_is_refused() -> None:
    with pytest.raises(Invalid, match="at least one"):
        check_plan([])


def test_a_plan_of_more_than_200_subtasks_is_refused() -> None:
    check_plan([sub(f"k{i}") for i in range(MAX_SUBTASKS)])
    with pytest.raises(Invalid, match="at most 200"):
        check_plan([sub(f"k{i}") for i in range(MAX_SUBTASKS + 1)])


def test_duplicate_keys_are_named() -> None:
    with pytest.raises(Invalid, match="Duplicate subtask keys: a, c"):
        check_plan([sub("a"), sub("b"), sub("a"), sub("c"), sub("c")])


def test_unknown_dependencies_are_named_with_their_subtask() -> None:
    with pytest.raises(Invalid, match="Unknown dependencies: b → zz"):
        check_plan([sub("a"), sub("b", "a", "zz")])


@pytest.mark.parametrize("key", ["", "a b", "é", "a/b", "x" * 65])
def test_keys_outside_the_syntax_are_named(key: str) -> None:
    with pytest.raises(Invalid, match="must match"):
        check_plan([sub("ok"), sub(key)])


def test_a_cycle_is_named_in_order() -> None:
    with pytest.raises(Invalid) as refused:
        check_plan([sub("a", "b"), sub("b", "c"), sub("c", "a"), sub("d")])

    assert "a → b → c → a" in str(refused.value)


def test_a_subtask_depending_on_itself_is_a_cycle() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_find_cycle_finds_none_in_a_diamond() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) is None


def test_dependents_are_transitive_and_in_plan_order() -> None:
    graph = {"a": [], "b": ["a"], "x": [], "c": ["b"], "d": ["c", "x"]}

    assert dependents(graph, ["a"]) == ["b", "c", "d"]
    assert dependents(graph, ["x"]) == ["d"]
    assert dependents(graph, ["d"]) == []


def test_child_ids_derive_from_coordinator_key_and_round() -> None:
    from uuid import uuid4

    coordinator = uuid4()
    assert child_run_id(coordinator, "a", 1) == child_run_id(coordinator, "a", 1)
    assert child_run_id(coordinator, "a", 1) != child_run_id(coordinator, "a", 2)
    assert child_run_id(coordinator, "a", 1) != child_run_id(coordinator, "b", 1)
    assert child_run_id(coordinator, "a", 1) != child_run_id(uuid4(), "a", 1)
