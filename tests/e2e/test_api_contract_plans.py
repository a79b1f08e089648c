"""The work plan endpoints under the HTTP contract: bad input is a JSON 4xx that changes
nothing, another user's runs are not found, and only the roles API.md names get in.

PUT work-plan takes a user key (the run's owner, while it is pending) or a runner key
holding the run's lease (with its fencing token); the reads take user keys only.
"""

from __future__ import annotations

import pytest

from tests.e2e.contract_helpers import (
    NOT_A_UUID,
    RUN,
    Case,
    R,
    World,
    assert_error,
    check_refused,
    send,
)
from tests.support import BOB, OTHER_RUNNER

FRESH = "/api/runs/{fresh}"
PLAN = FRESH + "/work-plan"
A = {"key": "a", "title": "A"}


def plan(*subtasks: dict[str, object], **body: object) -> dict[str, object]:
    return {"subtasks": list(subtasks), **body}


CASES = [
    Case("plan-malformed-json", "PUT", PLAN, content=b'{"subtasks": ['),
    Case("plan-json-array", "PUT", PLAN, json=[A]),
    Case("plan-missing-subtasks", "PUT", PLAN, json={}, field="subtasks"),
    Case("plan-subtasks-object", "PUT", PLAN, json={"subtasks": A}, field="subtasks"),
    Case("plan-empty", "PUT", PLAN, json=plan(), field="subtasks"),
    Case(
        "plan-over-200",
        "PUT",
        PLAN,
        json=plan(*({"key": f"k{i}", "title": "t"} for i in range(201))),
        field="subtasks",
    ),
    Case("plan-duplicate-keys", "PUT", PLAN, json=plan(A, A), field="subtasks"),
    Case(
        "plan-unknown-dependency",
        "PUT",
        PLAN,
        json=plan({**A, "depends_on": ["zz"]}),
        field="subtasks",
    ),
    Case(
        "plan-cycle",
        "PUT",
        PLAN,
        json=plan({**A, "depends_on": ["b"]}, {"key": "b", "title": "B", "depends_on": ["a"]}),
        field="subtasks",
    ),
    Case("plan-key-with-space", "PUT", PLAN, json=plan({**A, "key": "a b"}), field="subtasks"),
    Case("plan-key-65-chars", "PUT", PLAN, json=plan({**A, "key": "k" * 65}), field="subtasks"),
    Case("plan-key-empty", "PUT", PLAN, json=plan({**A, "key": ""}), field="subtasks"),
    Case("plan-key-number", "PUT", PLAN, json=plan({**A, "key": 7}), field="subtasks.0.key"),
    Case("plan-title-missing", "PUT", PLAN, json=plan({"key": "a"}), field="subtasks.0.title"),
    Case(
        "plan-depends-on-string",
        "PUT",
        PLAN,
        json=plan({**A, "depends_on": "b"}),
        field="subtasks.0.depends_on",
    ),
    Case(
        "plan-subtask-unknown-field",
        "PUT",
        PLAN,
        json=plan({**A, "priority": 1}),
        field="subtasks.0.priority",
    ),
    Case("plan-unknown-field", "PUT", PLAN, json=plan(A, goal="x"), field="goal"),
    Case(
        "plan-auto-approve-string",
        "PUT",
        PLAN,
        json=plan(A, auto_approve_children="yes"),
        field="auto_approve_children",
    ),
    Case("plan-user-with-fencing-token", "PUT", PLAN, json=plan(A, fencing_token=1)),
    Case("plan-bad-uuid", "PUT", f"/api/runs/{NOT_A_UUID}/work-plan", json=plan(A), field="run_id"),
    Case(
        "plan-on-a-claimed-run",
        "PUT",
        RUN + "/work-plan",
        json=plan(A),
        status=409,
        error="conflict",
    ),
    Case("plan-of-another-user", "PUT", PLAN, key=BOB, json=plan(A), status=404, error="not_found"),
    # a planner runner
    Case("plan-runner-without-token", "PUT", RUN + "/work-plan", key=R, json=plan(A)),
    Case(
        "plan-runner-stale-token",
        "PUT",
        RUN + "/work-plan",
        key=R,
        json=plan(A, fencing_token=10**6),
        status=409,
        error="stale_lease",
    ),
    Case(
        "plan-runner-not-holding-the-lease",
        "PUT",
        RUN + "/work-plan",
        key=OTHER_RUNNER,
        json=plan(A, fencing_token="$token"),
        status=404,
        error="not_found",
    ),
    Case(
        "plan-runner-on-a-pending-run",
        "PUT",
        PLAN,
        key=R,
        json=plan(A, fencing_token=1),
        status=404,
        error="not_found",
    ),
    # reads
    *[
        Case(f"{name}-no-plan", "GET", RUN + f"/{name}", status=404, error="not_found")
        for name in ("work-plan", "children")
    ],
    *[
        Case(f"{name}-bad-uuid", "GET", f"/api/runs/{NOT_A_UUID}/{name}", field="run_id")
        for name in ("work-plan", "children", "graph")
    ],
    *[
        Case(
            f"{name}-of-another-user",
            "GET",
            RUN + f"/{name}",
            key=BOB,
            status=404,
            error="not_found",
        )
        for name in ("work-plan", "children", "graph")
    ],
    *[
        Case(f"{name}-runner-key", "GET", RUN + f"/{name}", key=R, status=403, error="forbidden")
        for name in ("work-plan", "children", "graph")
    ],
    *[
        Case(
            f"{name}-min-position-word",
            "GET",
            RUN + f"/{name}",
            params={"min_position": "x"},
            field="min_position",
        )
        for name in ("work-plan", "children", "graph")
    ],
    # review of a plain run naming subtasks
    Case(
        "review-subtasks-on-a-plain-run",
        "POST",
        RUN + "/review",
        json={"approved": False, "request_changes": True, "subtasks": ["a"]},
        field="subtasks",
    ),
    Case(
        "review-subtasks-not-a-list",
        "POST",
        RUN + "/review",
        json={"approved": False, "request_changes": True, "subtasks": "a"},
        field="subtasks",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_to_the_plan_endpoints_is_refused_and_changes_nothing(
    world: World, case: Case
) -> None:
    check_refused(world, case)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", PLAN),
        ("GET", RUN + "/work-plan"),
        ("GET", RUN + "/children"),
        ("GET", RUN + "/graph"),
    ],
)
def test_the_plan_endpoints_need_a_key(world: World, method: str, path: str) -> None:
    case = Case("no-key", method, path, json=plan(A) if method == "PUT" else None)
    fresh = world.fresh()
    before = world.snapshot()
    status, text, headers = send(world, case, fresh, authorization=None)
    assert_error(status, text, headers, 401, "unauthorized")
    assert headers.get("www-authenticate", "").lower().startswith("bearer")
    world.assert_unchanged(before)


def test_the_graph_of_a_plain_run_is_its_lifecycle(world: World) -> None:
    answer = world.alice.get(f"/api/runs/{world.main}/graph")
    assert answer.status_code == 200, answer.text
    graph = answer.json()
    assert graph["variant"] == "run"
    current = [n["id"] for n in graph["nodes"] if n["status"] == "current"]
    assert current == ["in_progress"]
    assert {"from": "awaiting_review", "to": "in_progress", "loopback": True} in graph["edges"]
