"""Random work plans and random orders of child completions and failures: the coordinator
dispatches a subtask only after all its dependencies completed, every subtask whose
dependencies all completed exactly once, a blocked one never; every cycle is refused with
a real cycle."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import Invalid
from domain.plans import check_plan, child_run_id
from domain.runs import FAILED, Run

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHILD_ENDS = ("merged", "completed", "failed", "declined", "merge_failed", "cancelled")


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 30) -> list[dict[str, object]]:
    """A plan whose dependencies point only backwards in a hidden order, listed shuffled."""
    n = draw(st.integers(1, max_nodes))
    keys = [f"k{i}" for i in range(n)]
    plan = [
        {
            "key": key,
            "title": key,
            "depends_on": draw(st.lists(st.sampled_from(keys[:i]), unique=True, max_size=4))
            if i
            else [],
        }
        for i, key in enumerate(keys)
    ]
    return draw(st.permutations(plan))


def ancestors(graph: dict[str, list[str]], key: str) -> set[str]:
    found: set[str] = set()
    todo = list(graph[key])
    while todo:
        dep = todo.pop()
        if dep not in found:
            found.add(dep)
            todo.extend(graph[dep])
    return found


@settings(max_examples=150, deadline=None)
@given(plan=dags(), data=st.data())
def test_dispatch_follows_the_dependencies_for_any_order_of_ends(
    plan: list[dict[str, object]], data: st.DataObject
) -> None:
    run = Run.submit(run_id=uuid4(), owner="alice", task="goal", now=NOW)
    run.set_plan(
        subtasks=plan, auto_approve_children=True, integration_branch=None, actor="alice", now=NOW
    )
    graph = {str(s["key"]): list(s["depends_on"]) for s in plan}  # type: ignore[arg-type]
    ended: dict[str, str] = {}  # child id -> status
    outcome: dict[str, str] = {}  # key -> "merged" | "failed"
    dispatched: list[str] = []

    def advance() -> None:
        run.advance_plan(
            children=ended, now=NOW, child_id=lambda key, r: child_run_id(run.id, key, r)
        )
        for event in run.collect_events():
            if event.wire_type() == "subtask.dispatched":
                key = event.key
                # all its dependencies had completed when it was dispatched
                assert all(outcome.get(dep) == "merged" for dep in graph[key]), key
                dispatched.append(key)

    advance()
    while True:
        running = [k for k, s in run.plan["subtasks"].items() if s["status"] == "dispatched"]
        if not running:
            break
        key = data.draw(st.sampled_from(running))
        status = data.draw(st.sampled_from(CHILD_ENDS))
        outcome[key] = "merged" if status in ("merged", "completed") else "failed"
        ended[run.plan["subtasks"][key]["child_run_id"]] = status
        advance()

    assert len(dispatched) == len(set(dispatched)), "a subtask was dispatched twice"
    failed = {k for k, v in outcome.items() if v == "failed"}
    for key, subtask in run.plan["subtasks"].items():
        doomed = ancestors(graph, key) & failed
        if doomed:
            assert key not in dispatched and subtask["status"] == "blocked", key
        else:
            assert key in dispatched, key  # reachable: dispatched exactly once
    if failed:
        assert run.status == FAILED
    else:
        assert run.ready_for_assembly


@settings(max_examples=150, deadline=None)
@given(plan=dags(max_nodes=20), data=st.data())
def test_every_cyclic_plan_is_refused_naming_a_real_cycle(
    plan: list[dict[str, object]], data: st.DataObject
) -> None:
    keys = [str(s["key"]) for s in plan]
    order = sorted(keys, key=lambda k: int(k[1:]))
    # close a cycle: an early subtask now depends on a later one that reaches it
    low = data.draw(st.sampled_from(order))
    high = data.draw(st.sampled_from(order[order.index(low) :]))
    graph = {str(s["key"]): list(s["depends_on"]) for s in plan}  # type: ignore[arg-type]
    if high != low and low not in ancestors(graph, high):
        graph[high].append(low)  # high -> low now, so low -> high closes the cycle
    graph[low].append(high)
    cyclic = [{"key": k, "title": k, "depends_on": graph[k]} for k in keys]

    with pytest.raises(Invalid) as refused:
        check_plan(cyclic)

    named = re.search(r"cycle: (.*)\.$", str(refused.value))
    assert named, str(refused.value)
    cycle = named.group(1).split(" → ")
    assert cycle[0] == cycle[-1] and len(cycle) >= 2
    for key, dep in itertools.pairwise(cycle):
        assert dep in graph[key], (key, dep)
