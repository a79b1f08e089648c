"""The usage endpoints under the HTTP contract: bad input is a JSON 4xx that changes
nothing, another user's runs and projects are not found, a runner key is forbidden and no
key is unauthorized."""

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

RUN_USAGE = "/api/runs/{run}/usage"
PROJECT_USAGE = "/api/projects/{project}/usage"
ENDPOINTS = [RUN_USAGE, PROJECT_USAGE]


class Spent(NamedTuple):
    """Alice's project with a run in it."""

    project: str
    run: str


@pytest.fixture(scope="module")
def spent(world: World) -> Iterator[Spent]:
    project = world.alice.post("/api/projects", json={"name": "usage"}).json()["project_id"]
    made = world.alice.post(f"/api/projects/{project}/runs", json={"task": "t"})
    assert made.status_code == 202, made.text
    yield Spent(project, made.json()["run_id"])


def day(value: str) -> dict[str, str]:
    return {"since": value}


CASES = [
    Case("run-bad-uuid", "GET", f"/api/runs/{NOT_A_UUID}/usage", field="run_id"),
    Case("run-unknown", "GET", f"/api/runs/{uuid4()}/usage", status=404, error="not_found"),
    Case(
        "run-min-position-word",
        "GET",
        RUN_USAGE,
        params={"min_position": "x"},
        field="min_position",
    ),
    Case("project-bad-uuid", "GET", f"/api/projects/{NOT_A_UUID}/usage", field="project_id"),
    Case("project-unknown", "GET", f"/api/projects/{uuid4()}/usage", status=404, error="not_found"),
    Case("since-not-a-day", "GET", PROJECT_USAGE, params=day("yesterday"), field="since"),
    Case(
        "since-a-timestamp", "GET", PROJECT_USAGE, params=day("2026-12-01T00:00:00Z"), field="since"
    ),
    Case("since-no-such-day", "GET", PROJECT_USAGE, params=day("2026-02-30"), field="since"),
    Case("until-not-a-day", "GET", PROJECT_USAGE, params={"until": "12/01/2026"}, field="until"),
    Case(
        "since-after-until",
        "GET",
        PROJECT_USAGE,
        params={"since": "2026-12-02", "until": "2026-12-01"},
        field="since",
    ),
    *[
        Case(
            f"{path.split('/')[2]} of another user",
            "GET",
            path,
            key=BOB,
            status=404,
            error="not_found",
        )
        for path in ENDPOINTS
    ],
    *[
        Case(f"{path.split('/')[2]} runner key", "GET", path, key=R, status=403, error="forbidden")
        for path in ENDPOINTS
    ],
]


def with_ids(case: Case, spent: Spent) -> Case:
    path = case.path.replace("{run}", spent.run).replace("{project}", spent.project)
    return dataclasses.replace(case, path=path)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_to_the_usage_endpoints_is_refused_and_changes_nothing(
    world: World, spent: Spent, case: Case
) -> None:
    check_refused(world, with_ids(case, spent))


@pytest.mark.parametrize("path", ENDPOINTS)
def test_the_usage_endpoints_need_a_key(world: World, spent: Spent, path: str) -> None:
    case = with_ids(Case("no-key", "GET", path), spent)
    before = world.snapshot()
    status, text, headers = send(world, case, authorization=None)
    assert_error(status, text, headers, 401, "unauthorized")
    world.assert_unchanged(before)


def test_a_run_and_a_project_with_no_usage_answer_zeros(world: World, spent: Spent) -> None:
    run = world.alice.get(RUN_USAGE.replace("{run}", spent.run))
    assert run.status_code == 200, run.text
    zero = {
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": 0,
        "cost_usd": 0.0,
        "cost_source": None,
    }
    assert run.json() == {"run_id": spent.run, "total": zero, "models": []}
    project = world.alice.get(PROJECT_USAGE.replace("{project}", spent.project))
    assert project.json()["total"] == zero and project.json()["days"] == []
