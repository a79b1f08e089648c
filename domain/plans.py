"""Work plans: a goal as a graph of subtasks, each done by a child run of a coordinator.

Pure rules only: checking a plan (keys, dependencies, cycles, size), the order of its
subtasks, and what depends on what. The coordinator's commands and events that use them
are in domain/runs/coordination.py and domain/runs/plan_events.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.errors import Invalid

KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_SUBTASKS = 200

# Subtask statuses.
WAITING, DISPATCHED, COMPLETED = "waiting", "dispatched", "completed"
FAILED, BLOCKED, CANCELLED = "failed", "blocked", "cancelled"
SUBTASK_STATUSES = (WAITING, DISPATCHED, COMPLETED, FAILED, BLOCKED, CANCELLED)

# Coordinator statuses (`coordinator_status` on the run, `status` of its plan).
PLANNED, DISPATCHING, AWAITING_ASSEMBLY = "planned", "dispatching", "awaiting_assembly"
COMPLETE = "complete"
COORDINATOR_STATUSES = (PLANNED, DISPATCHING, AWAITING_ASSEMBLY, COMPLETE, FAILED, CANCELLED)

# A child run's end, as its subtask sees it.
CHILD_SUCCESS = frozenset({"merged", "completed"})
CHILD_FAILURE = frozenset({"failed", "declined", "merge_failed", "cancelled"})

_CHILD_NAMESPACE = uuid5(NAMESPACE_URL, "https://runledger.dev/ns/child-run")


def child_run_id(coordinator_id: UUID, key: str, round_: int) -> UUID:
    """The id of the child run doing `key` in dispatch round `round_` of a coordinator:
    derived, so that creating the same child twice finds it there (exactly once)."""
    return uuid5(_CHILD_NAMESPACE, f"{coordinator_id}/{key}/{round_}")


def check_plan(subtasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The subtasks as a valid plan (`task` defaults to `title`), or Invalid naming the
    offending keys: duplicates, unknown dependencies, a cycle (one, in order), a bad key,
    an empty plan or one of more than MAX_SUBTASKS subtasks."""
    if not subtasks:
        raise Invalid("A work plan needs at least one subtask.", "subtasks")
    if len(subtasks) > MAX_SUBTASKS:
        raise Invalid(f"A work plan has at most {MAX_SUBTASKS} subtasks.", "subtasks")
    keys = [str(s["key"]) for s in subtasks]
    bad = [k for k in keys if not KEY_PATTERN.fullmatch(k)]
    if bad:
        raise Invalid(f"Subtask keys must match [A-Za-z0-9_.-]{{1,64}}: {_names(bad)}.", "subtasks")
    seen = set(keys)
    if len(seen) < len(keys):
        duplicates = dict.fromkeys(k for i, k in enumerate(keys) if k in keys[:i])
        raise Invalid(f"Duplicate subtask keys: {_names(duplicates)}.", "subtasks")
    unknown = [
        f"{s['key']} → {dep}"
        for s in subtasks
        for dep in s.get("depends_on", [])
        if dep not in seen
    ]
    if unknown:
        raise Invalid(f"Unknown dependencies: {', '.join(unknown)}.", "subtasks")
    graph = {str(s["key"]): list(dict.fromkeys(s.get("depends_on", []))) for s in subtasks}
    cycle = find_cycle(graph)
    if cycle:
        raise Invalid(f"The dependencies form a cycle: {' → '.join(cycle)}.", "subtasks")
    return [
        {
            "key": str(s["key"]),
            "title": s["title"],
            "task": s.get("task") or s["title"],
            "scope": s.get("scope"),
            "agent": s.get("agent"),
            "model": s.get("model"),
            "depends_on": graph[str(s["key"])],
        }
        for s in subtasks
    ]


def find_cycle(depends_on: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One dependency cycle as its keys in order, the first repeated at the end
    (`[a, b, c, a]`: a depends on b, b on c, c on a), or None when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in depends_on:
        if root in state:
            continue
        path: list[str] = [root]
        stack = [iter(depends_on[root])]
        state[root] = 1
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append(iter(depends_on.get(dep, ())))
    return None


def dependents(depends_on: Mapping[str, Iterable[str]], keys: Iterable[str]) -> list[str]:
    """Every subtask that depends on one of `keys`, directly or not, in plan order (the
    keys themselves not included unless one depends on another)."""
    reverse: dict[str, list[str]] = {}
    for key, deps in depends_on.items():
        for dep in deps:
            reverse.setdefault(dep, []).append(key)
    found: set[str] = set()
    todo = list(keys)
    while todo:
        for child in reverse.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return [key for key in depends_on if key in found]


def _names(keys: Iterable[str]) -> str:
    return ", ".join(keys)
