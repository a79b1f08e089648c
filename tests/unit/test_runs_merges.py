"""The Run aggregate's merge: the start it records before git moves, and its outcomes.

Given events, when a command, then the events appended or the error.
"""

from __future__ import annotations

import pytest

from domain.errors import Conflict
from domain.runs import AWAITING_REVIEW, IN_PROGRESS, MERGED, MERGING, Run
from tests.unit.helpers import LATER, NOW, appended, given, report, review, submit

START = {"target": "main", "old_commit": "a" * 40, "tip": "b" * 40, "merge_commit": "c" * 40}


def start(run: Run, **changes: str) -> None:
    run.start_merge(**{**START, **changes}, now=LATER)


def test_starting_a_merge_records_what_it_will_publish_and_stays_merging() -> None:
    run = given(MERGING)

    start(run)

    assert run.status == MERGING
    assert run.merge_started == START
    assert appended(run) == ["merge.started"]


def test_recording_the_same_start_again_appends_nothing() -> None:
    run = given(MERGING)
    start(run)
    run.collect_events()

    start(run)

    assert appended(run) == []


def test_a_merge_started_again_after_a_crash_records_its_new_commit() -> None:
    run = given(MERGING)
    start(run)
    run.collect_events()

    start(run, merge_commit="d" * 40)

    assert run.merge_started == {**START, "merge_commit": "d" * 40}
    assert appended(run) == ["merge.started"]


@pytest.mark.parametrize("status", [AWAITING_REVIEW, MERGED])
def test_starting_a_merge_when_not_merging_is_rejected(status: str) -> None:
    run = given(status)

    with pytest.raises(Conflict):
        start(run)

    assert appended(run) == []


def test_a_new_approval_forgets_the_start_of_a_refused_merge() -> None:
    run = given(MERGING)
    start(run)
    run.refuse_merge(reason="dirty checkout", now=NOW)

    review(run, "approve", now=LATER)

    assert (run.status, run.merge_started) == (MERGING, None)


def test_a_completed_merge_keeps_the_start_it_published() -> None:
    run = given(MERGING)
    start(run)

    run.complete_merge(merge_result=f"merged:{'c' * 40}", now=LATER)

    assert (run.status, run.merge_started) == (MERGED, START)


def test_a_run_merges_into_the_branch_it_started_from() -> None:
    assert submit(originating_branch="develop").target_branch == "develop"


def test_a_run_with_no_originating_branch_merges_into_main() -> None:
    assert submit().target_branch == "main"


def test_a_run_whose_runner_named_no_branch_has_its_work_on_its_own_branch() -> None:
    run = given(IN_PROGRESS)

    report(run, "changes", tree_hash="t" * 40)

    assert run.branch_name == f"runledger/{run.id}"


def test_a_run_whose_runner_named_a_branch_has_its_work_there() -> None:
    run = given(IN_PROGRESS)

    report(run, "changes", tree_hash="t" * 40, branch="feature/x")

    assert run.branch_name == "feature/x"
