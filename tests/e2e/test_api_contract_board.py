"""The board endpoints under the HTTP contract: bad input is a JSON 4xx that changes
nothing, another user's projects and tasks are not found, a runner key is forbidden and
no key is unauthorized."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import NamedTuple
from uuid import uuid4

import pytest

from tests.e2e.contract_helpers import (
    NOT_A_UUID,
    Case,
    R,
    World,
    assert_error,
    check_refused,
    send,
)
from tests.support import BOB

PROJECT = "/api/projects/{project}"
TASKS = PROJECT + "/backlog/tasks"
TASK = TASKS + "/{task}"
SETTINGS = PROJECT + "/backlog/settings"
READY_ALL = PROJECT + "/backlog/ready-all"
READY_TASK = TASKS + "/{ready}"
UNKNOWN = str(uuid4())


class Board(NamedTuple):
    """Alice's project with a task in the backlog and one in ready."""

    project: str
    task: str
    ready: str


@pytest.fixture(scope="module")
def board(world: World) -> Iterator[Board]:
    project = world.alice.post("/api/projects", json={"name": "board"}).json()["project_id"]
    tasks = f"/api/projects/{project}/backlog/tasks"
    task = world.alice.post(tasks, json={"title": "in the backlog"}).json()["task_id"]
    ready = world.alice.post(tasks, json={"title": "ready"}).json()["task_id"]
    answer = world.alice.post(f"{tasks}/{ready}/ready")
    assert answer.status_code == 200, answer.text
    yield Board(project, task, ready)


def filled(case: Case, board: Board) -> Case:
    """The case with the board's ids in its path."""
    path = case.path.replace("{project}", board.project)
    path = path.replace("{task}", board.task).replace("{ready}", board.ready)
    return dataclasses.replace(case, path=path)


MOVES = ("ready", "backlog", "archive")
COMMANDS = [
    ("POST", TASKS, {"title": "x"}),
    ("PATCH", TASK, {"title": "x"}),
    ("DELETE", TASK, None),
    *[("POST", f"{TASK}/{move}", {}) for move in MOVES],
    ("POST", f"{TASK}/reorder", {"before_task_id": "$other"}),
    ("POST", f"{READY_TASK}/start", {}),
    ("PUT", SETTINGS, {"auto_pickup": False, "max_concurrent_runs": 3}),
    ("POST", READY_ALL, {}),
]
ENDPOINTS = [*COMMANDS, ("GET", PROJECT + "/board", None)]


def _cases() -> list[Case]:
    cases = [
        Case("create-malformed-json", "POST", TASKS, content=b'{"title": '),
        Case("create-json-array", "POST", TASKS, json=["x"]),
        Case("create-missing-title", "POST", TASKS, json={}, field="title"),
        Case("create-empty-title", "POST", TASKS, json={"title": ""}, field="title"),
        Case("create-blank-title", "POST", TASKS, json={"title": "  "}, field="title"),
        Case("create-title-number", "POST", TASKS, json={"title": 7}, field="title"),
        Case("create-title-too-long", "POST", TASKS, json={"title": "t" * 501}, field="title"),
        Case(
            "create-description-too-long",
            "POST",
            TASKS,
            json={"title": "t", "description": "d" * 20_001},
            field="description",
        ),
        Case("create-unknown-field", "POST", TASKS, json={"title": "t", "rank": 1}, field="rank"),
        Case(
            "create-bad-project-uuid",
            "POST",
            f"/api/projects/{NOT_A_UUID}/backlog/tasks",
            json={"title": "t"},
            field="project_id",
        ),
        Case(
            "create-unknown-project",
            "POST",
            f"/api/projects/{UNKNOWN}/backlog/tasks",
            json={"title": "t"},
            status=404,
            error="not_found",
        ),
        Case("edit-empty-title", "PATCH", TASK, json={"title": ""}, field="title"),
        Case("edit-unknown-field", "PATCH", TASK, json={"column": "done"}, field="column"),
        Case("edit-title-null-string", "PATCH", TASK, json={"title": 1}, field="title"),
        Case(
            "edit-bad-task-uuid",
            "PATCH",
            f"{TASKS}/{NOT_A_UUID}",
            json={"title": "t"},
            field="task_id",
        ),
        *[
            Case(f"{move}-unknown-field", "POST", f"{TASK}/{move}", json={"x": 1}, field="x")
            for move in MOVES
        ],
        *[
            Case(f"{move}-bad-task-uuid", "POST", f"{TASKS}/{NOT_A_UUID}/{move}", field="task_id")
            for move in MOVES
        ],
        Case("reorder-neither", "POST", f"{TASK}/reorder", json={}, field="before_task_id"),
        Case(
            "reorder-both",
            "POST",
            f"{TASK}/reorder",
            json={"before_task_id": UNKNOWN, "after_task_id": UNKNOWN},
            field="before_task_id",
        ),
        Case(
            "reorder-not-a-uuid",
            "POST",
            f"{TASK}/reorder",
            json={"before_task_id": "x"},
            field="before_task_id",
        ),
        Case(
            "reorder-another-column",
            "POST",
            f"{TASK}/reorder",
            json={"after_task_id": "{ready}"},
            field="after_task_id",
        ),
        Case(
            "reorder-itself",
            "POST",
            f"{TASK}/reorder",
            json={"before_task_id": "{task}"},
            field="before_task_id",
        ),
        Case(
            "reorder-unknown-other-task",
            "POST",
            f"{TASK}/reorder",
            json={"before_task_id": UNKNOWN},
            field="before_task_id",
        ),
        Case("start-a-backlog-task", "POST", f"{TASK}/start", status=409, error="conflict"),
        Case("start-unknown-field", "POST", f"{READY_TASK}/start", json={"x": 1}, field="x"),
        Case("ready-all-unknown-field", "POST", READY_ALL, json={"x": 1}, field="x"),
        Case("ready-all-json-array", "POST", READY_ALL, json=[]),
        Case(
            "ready-all-bad-project-uuid",
            "POST",
            f"/api/projects/{NOT_A_UUID}/backlog/ready-all",
            field="project_id",
        ),
        Case("settings-malformed-json", "PUT", SETTINGS, content=b'{"auto_pickup": '),
        Case("settings-no-body", "PUT", SETTINGS, content=b""),
        Case("settings-missing-flag", "PUT", SETTINGS, json={}, field="auto_pickup"),
        Case(
            "settings-flag-string",
            "PUT",
            SETTINGS,
            json={"auto_pickup": "true"},
            field="auto_pickup",
        ),
        Case(
            "settings-limit-zero",
            "PUT",
            SETTINGS,
            json={"auto_pickup": True, "max_concurrent_runs": 0},
            field="max_concurrent_runs",
        ),
        Case(
            "settings-limit-51",
            "PUT",
            SETTINGS,
            json={"auto_pickup": True, "max_concurrent_runs": 51},
            field="max_concurrent_runs",
        ),
        Case(
            "settings-limit-float",
            "PUT",
            SETTINGS,
            json={"auto_pickup": True, "max_concurrent_runs": 2.5},
            field="max_concurrent_runs",
        ),
        Case(
            "settings-limit-huge",
            "PUT",
            SETTINGS,
            json={"auto_pickup": True, "max_concurrent_runs": 10**30},
            field="max_concurrent_runs",
        ),
        Case(
            "settings-unknown-field",
            "PUT",
            SETTINGS,
            json={"auto_pickup": True, "limit": 2},
            field="limit",
        ),
        Case(
            "settings-unknown-project",
            "PUT",
            f"/api/projects/{UNKNOWN}/backlog/settings",
            json={"auto_pickup": True},
            status=404,
            error="not_found",
        ),
        Case("board-bad-uuid", "GET", f"/api/projects/{NOT_A_UUID}/board", field="project_id"),
        Case(
            "board-min-position-word",
            "GET",
            PROJECT + "/board",
            params={"min_position": "x"},
            field="min_position",
        ),
    ]
    for method, path, body in ENDPOINTS:
        name = f"{method} {path.split('{project}')[-1] or 'tasks'}"
        if path != TASKS:
            unknown = path.replace("{task}", UNKNOWN).replace("{ready}", UNKNOWN)
            if unknown != path:
                cases.append(
                    Case(
                        f"{name} unknown task",
                        method,
                        unknown,
                        json=body,
                        status=404,
                        error="not_found",
                    )
                )
        cases.append(
            Case(
                f"{name} of another user",
                method,
                path,
                key=BOB,
                json=body,
                status=404,
                error="not_found",
            )
        )
        cases.append(
            Case(
                f"{name} runner key", method, path, key=R, json=body, status=403, error="forbidden"
            )
        )
    return cases


CASES = _cases()


def with_ids(case: Case, board: Board) -> Case:
    """The case with the board's ids in its path and body."""
    case = filled(case, board)
    if isinstance(case.json, dict):
        ids = {"{task}": board.task, "{ready}": board.ready, "$other": board.ready}
        body = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in case.json.items()}
        case = dataclasses.replace(case, json=body)
    return case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_to_the_board_endpoints_is_refused_and_changes_nothing(
    world: World, board: Board, case: Case
) -> None:
    check_refused(world, with_ids(case, board))


@pytest.mark.parametrize(
    ("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS]
)
def test_the_board_endpoints_need_a_key(
    world: World, board: Board, method: str, path: str, body: object
) -> None:
    case = with_ids(Case("no-key", method, path, json=body), board)
    before = world.snapshot()
    status, text, headers = send(world, case, authorization=None)
    assert_error(status, text, headers, 401, "unauthorized")
    assert headers.get("www-authenticate", "").lower().startswith("bearer")
    world.assert_unchanged(before)
