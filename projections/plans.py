"""The work plan read model's documents: a coordinator's plan, its children, and the graph
a UI draws (a coordinator's subtasks, or a plain run's lifecycle). Pure functions of the
Run aggregate's state and of the runs view's documents."""

from __future__ import annotations

import itertools
from typing import Any

from domain.runs import STATUSES, Run
from domain.timestamps import format_timestamp

ASSEMBLY = "@assembly"  # the assembly review's node: no subtask key starts with @
SUBTASK_FIELDS = ("key", "title", "task", "scope", "agent", "model", "depends_on")


def plan_view(run: Run) -> dict[str, Any]:
    """A coordinator's plan as `GET /api/runs/{id}/work-plan` shows it."""
    plan = run.plan
    assert plan is not None, "a plan view is for a coordinator"
    return {
        "run_id": str(run.id),
        "status": run.coordinator_status,
        "run_status": run.status,
        "integration_branch": plan["integration_branch"],
        "auto_approve_children": plan["auto_approve_children"],
        "subtasks": [
            {
                **{name: s[name] for name in SUBTASK_FIELDS},
                "status": s["status"],
                "child_run_id": s["child_run_id"],
                "attempts": s["attempts"],
                "round": s["round"],
            }
            for s in plan["subtasks"].values()
        ],
        "updated_at": format_timestamp(run.modified_on),
    }


def children_doc(plan: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each subtask's current child run beside its subtask's status (`runs`: the runs
    view's documents of the children, by id)."""
    items = []
    for subtask in plan["subtasks"]:
        child_id = subtask["child_run_id"]
        if child_id is None:
            continue
        child = runs.get(child_id, {})
        items.append(
            {
                "subtask_key": subtask["key"],
                "child_run_id": child_id,
                "subtask_status": subtask["status"],
                "child_status": child.get("status"),
                "branch": child.get("branch") or (f"runledger/{child_id}" if child else None),
                "tree_hash": child.get("tree_hash"),
                "step_count": child.get("step_count", 0),
            }
        )
    return {"run_id": plan["run_id"], "items": items}


def plan_graph(plan: dict[str, Any]) -> dict[str, Any]:
    """A coordinator's graph: a node per subtask, an edge from each dependency to its
    dependent, and the assembly review after the subtasks nothing depends on."""
    subtasks = plan["subtasks"]
    needed = {dep for s in subtasks for dep in s["depends_on"]}
    nodes = [
        {
            "id": s["key"],
            "label": s["title"],
            "kind": "subtask",
            "status": s["status"],
            "child_run_id": s["child_run_id"],
        }
        for s in subtasks
    ]
    edges = [_edge(dep, s["key"]) for s in subtasks for dep in s["depends_on"]]
    nodes.append(
        {"id": ASSEMBLY, "label": "Assembly review", "kind": "review", "status": plan["status"]}
    )
    edges += [_edge(s["key"], ASSEMBLY) for s in subtasks if s["key"] not in needed]
    return {"variant": "coordinator", "nodes": nodes, "edges": edges}


# A plain run's lifecycle: the way forward, the ways back (loopbacks), and the ends.
FORWARD = ("pending", "in_progress", "awaiting_review", "merging", "merged")
LOOPBACKS = (
    ("in_progress", "pending"),  # a transient failure retries
    ("awaiting_review", "in_progress"),  # changes requested
    ("merging", "awaiting_review"),  # the merge could not start
)
ENDS = (
    ("in_progress", "completed"),
    ("in_progress", "failed"),
    ("awaiting_review", "declined"),
    ("merging", "merge_failed"),
    ("pending", "cancelled"),
)


def run_graph(run: dict[str, Any]) -> dict[str, Any]:
    """A plain run's lifecycle graph with where it stands: `current` for its status,
    `done` for the statuses before it on the way forward, `upcoming` for the others."""
    status = run["status"]
    reached = FORWARD.index(status) if status in FORWARD else _last_forward(run)

    def node_status(name: str) -> str:
        if name == status:
            return "current"
        if name in FORWARD and FORWARD.index(name) < reached:
            return "done"
        return "upcoming"

    nodes = [
        {"id": name, "label": name.replace("_", " "), "kind": "status", "status": node_status(name)}
        for name in STATUSES
        if name != "paused" or status == "paused"
    ]
    edges = [_edge(a, b) for a, b in itertools.pairwise(FORWARD)]
    edges += [_edge(a, b, loopback=True) for a, b in LOOPBACKS]
    edges += [_edge(a, b) for a, b in ENDS]
    if status == "paused":
        edges += [_edge("in_progress", "paused"), _edge("paused", "in_progress", loopback=True)]
    return {"variant": "run", "nodes": nodes, "edges": edges}


def _edge(source: str, target: str, loopback: bool = False) -> dict[str, Any]:
    return {"from": source, "to": target, "loopback": loopback}


def _last_forward(run: dict[str, Any]) -> int:
    """How many statuses of the way forward a run that left it passed."""
    for before, end in ENDS:
        if end == run["status"] and end != "cancelled":
            return FORWARD.index(before) + 1
    if run.get("review") is not None:  # cancelled or paused: as far as its record shows
        return FORWARD.index("awaiting_review") + 1
    return FORWARD.index("in_progress") + 1 if run.get("started_at") else 1
