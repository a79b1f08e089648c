"""Helpers of the board's end-to-end tests: its calls, and the board as ids per column."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.projects_helpers import caught_up, expect


def tasks_path(project_id: str, task_id: str | None = None) -> str:
    """The path of a project's tasks, or of one task."""
    path = f"/api/projects/{project_id}/backlog/tasks"
    return path if task_id is None else f"{path}/{task_id}"


def create_task(client: httpx.Client, project_id: str, title: str, **body: Any) -> dict[str, Any]:
    """POST a task; the 201 body."""
    task = expect(client.post(tasks_path(project_id), json={"title": title, **body}), 201)
    assert isinstance(task, dict)
    return task


def act(client: httpx.Client, project_id: str, task_id: str, action: str, **body: Any) -> Any:
    """POST …/tasks/{task_id}/{action}; the response."""
    return client.post(f"{tasks_path(project_id, task_id)}/{action}", json=body)


def board(client: httpx.Client, project_id: str) -> dict[str, Any]:
    """The project's board once it includes everything committed so far."""
    body = expect(client.get(f"/api/projects/{project_id}/board", params=caught_up(client)), 200)
    assert [c["name"] for c in body["columns"]] == [
        "backlog",
        "ready",
        "in_progress",
        "in_review",
        "done",
    ]
    return dict(body)


def columns(client: httpx.Client, project_id: str) -> dict[str, list[str]]:
    """The board as task titles per column, in order (empty columns left out)."""
    shown = board(client, project_id)["columns"]
    return {c["name"]: [t["title"] for t in c["tasks"]] for c in shown if c["tasks"]}


def task_on_board(client: httpx.Client, project_id: str, task_id: str) -> dict[str, Any]:
    """One task as the board shows it."""
    for column in board(client, project_id)["columns"]:
        for task in column["tasks"]:
            if task["task_id"] == task_id:
                return dict(task)
    raise AssertionError(f"task {task_id} is not on the board")
