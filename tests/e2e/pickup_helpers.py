"""Helpers of the auto-pickup tests: turning it on, and judging a board's runs from the
event log (how many were active at once, in which order they started)."""

from __future__ import annotations

from typing import Any

import httpx

from domain.topics import TERMINAL_TYPES
from tests.e2e.helpers import global_history
from tests.e2e.projects_helpers import expect


def auto_pickup(client: httpx.Client, project_id: str, limit: int, on: bool = True) -> Any:
    """PUT the board's settings; the 200 body."""
    body = {"auto_pickup": on, "max_concurrent_runs": limit}
    return expect(client.put(f"/api/projects/{project_id}/backlog/settings", json=body), 200)


def board_log(client: httpx.Client, project_id: str) -> list[dict[str, Any]]:
    """The project's events in global order: its board's and its runs'."""
    return global_history(client, params={"project_id": project_id})


def most_active(events: list[dict[str, Any]]) -> int:
    """The most board runs active at once along the log: a run is active from its
    `run.submitted` (with a task) to the event that ends it."""
    active: set[str] = set()
    most = 0
    for event in events:
        if event["type"] == "run.submitted" and event["data"].get("task_id"):
            active.add(event["run_id"])
        elif event["type"] in TERMINAL_TYPES:
            active.discard(event.get("run_id", ""))
        most = max(most, len(active))
    return most


def starts(events: list[dict[str, Any]]) -> list[str]:
    """The task ids in the order their starts were recorded."""
    return [e["data"]["task_id"] for e in events if e["type"] == "backlog.task_started"]


def claims(events: list[dict[str, Any]], runs: dict[str, str]) -> list[str]:
    """The task ids (by `runs`: run id → task id) in the order their runs were first
    claimed."""
    seen: list[str] = []
    for event in events:
        if event["type"] == "run.claimed" and runs[event["run_id"]] not in seen:
            seen.append(runs[event["run_id"]])
    return seen


def task_runs(events: list[dict[str, Any]]) -> dict[str, str]:
    """Run id → task id, for every board run of the log."""
    return {
        e["run_id"]: e["data"]["task_id"]
        for e in events
        if e["type"] == "run.submitted" and e["data"].get("task_id")
    }
