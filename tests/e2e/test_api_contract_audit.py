"""The audit routes' contract: bad parameters are 400 and change nothing, someone else's
run or event is 404 like a missing one, sizes the log does not have are 404."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.contract_helpers import NOT_A_UUID, Case, World, check_refused
from tests.support import BOB

INCLUSION = "/api/audit/proofs/inclusion"
CONSISTENCY = "/api/audit/proofs/consistency"
CHECKPOINT = "/api/audit/checkpoint"
HUGE = str(10**30)
FAR = str(2**62)  # a position or tree size the log will not reach
NOT_FOUND: dict[str, Any] = {"status": 404, "error": "not_found"}
UNKNOWN = "00000000-0000-4000-8000-000000000000"

CASES = [
    Case("audit-bad-id", "GET", f"/api/runs/{NOT_A_UUID}/audit", field="run_id"),
    Case(
        "checkpoint-size-not-a-number",
        "GET",
        CHECKPOINT,
        params={"tree_size": "x"},
        field="tree_size",
    ),
    Case(
        "checkpoint-size-negative", "GET", CHECKPOINT, params={"tree_size": "-1"}, field="tree_size"
    ),
    Case("checkpoint-size-huge", "GET", CHECKPOINT, params={"tree_size": HUGE}, field="tree_size"),
    Case("inclusion-no-position", "GET", INCLUSION, field="position"),
    Case("inclusion-position-zero", "GET", INCLUSION, params={"position": "0"}, field="position"),
    Case("inclusion-position-text", "GET", INCLUSION, params={"position": "1e3"}, field="position"),
    Case(
        "inclusion-size-zero",
        "GET",
        INCLUSION,
        params={"position": "1", "tree_size": "0"},
        field="tree_size",
    ),
    Case("consistency-no-to", "GET", CONSISTENCY, params={"from": "1"}, field="to"),
    Case("consistency-no-from", "GET", CONSISTENCY, params={"to": "1"}, field="from"),
    Case(
        "consistency-from-zero", "GET", CONSISTENCY, params={"from": "0", "to": "1"}, field="from"
    ),
    Case(
        "consistency-backwards", "GET", CONSISTENCY, params={"from": "3", "to": "2"}, field="from"
    ),
    Case("consistency-huge", "GET", CONSISTENCY, params={"from": "1", "to": HUGE}, field="to"),
    # not found: someone else's, missing, or beyond the log
    Case("audit-other-users-run", "GET", "/api/runs/{main}/audit", key=BOB, **NOT_FOUND),
    Case("audit-unknown-run", "GET", f"/api/runs/{UNKNOWN}/audit", **NOT_FOUND),
    Case("audit-deleted-run", "GET", "/api/runs/{fresh}/audit", **NOT_FOUND),
    Case(
        "inclusion-other-users-event",
        "GET",
        INCLUSION,
        key=BOB,
        params={"position": "1"},
        **NOT_FOUND,
    ),
    Case("inclusion-no-such-position", "GET", INCLUSION, params={"position": FAR}, **NOT_FOUND),
    Case(
        "inclusion-size-beyond-log",
        "GET",
        INCLUSION,
        params={"position": "1", "tree_size": FAR},
        **NOT_FOUND,
    ),
    Case(
        "consistency-beyond-log", "GET", CONSISTENCY, params={"from": "1", "to": FAR}, **NOT_FOUND
    ),
    Case("checkpoint-size-never-signed", "GET", CHECKPOINT, params={"tree_size": FAR}, **NOT_FOUND),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_or_foreign_audit_request_is_refused_and_changes_nothing(
    world: World, case: Case
) -> None:
    if case.name == "audit-deleted-run":
        check_deleted(world, case)
        return
    check_refused(world, case)


def check_deleted(world: World, case: Case) -> None:
    """A deleted run's audit is not found, as every other read of it."""
    run_id = world.fresh()
    deleted = world.alice.delete(f"/api/runs/{run_id}")
    assert deleted.status_code == 204, deleted.text
    position = int(deleted.headers["X-Position"])
    for _ in range(600):  # until the read models hold the deletion
        if world.alice.get("/api/runs", params={"min_position": position}).status_code == 200:
            break
    answer = world.alice.get(case.path.format(fresh=run_id))
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"] == "not_found"
