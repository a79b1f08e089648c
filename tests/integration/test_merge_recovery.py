"""The merge policy on both stores: a merge a crash interrupted is finished or redone."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from adapters import git, merges
from api.service.policies import MERGE_TRIES
from api.service.runtime import Runtime
from tests.integration.merge_helpers import (
    in_step,
    killed_after_publishing,
    killed_after_recording,
    run_branch,
)
from tests.support import make_repo

OWNER, RUNNER = "alice", "runner-1"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def merging_run(runtime: Runtime, repo: Path, tmp_path: Path, name: str = "a") -> UUID:
    """A run whose branch shouts app.py, approved: waiting in `merging`."""
    engine = runtime.engine
    run_id = engine.submit_run(OWNER, "t", repository_path=str(repo)).run_id
    branch = run_branch(repo, tmp_path, name, {"app.py": "one\nTWO\nthree\n", "n.txt": "n\n"})
    _, lease = engine.claim_run(run_id, RUNNER)
    tree = git.tree_of(repo, branch)
    engine.report_outcome(
        run_id, RUNNER, lease.fencing_token, "changes", tree_hash=tree, branch=branch
    )
    assert engine.review_run(run_id, OWNER, approved=True).status == "merging"
    runtime.catch_up()
    return run_id


def record(runtime: Runtime, run_id: UUID, start: merges.MergeStart) -> None:
    """What the merge policy records before it moves a ref."""
    runtime.engine.start_merge(
        run_id, start.target, start.old_commit, start.tip, start.merge_commit
    )


def types(runtime: Runtime, run_id: UUID) -> list[str]:
    """The wire types of the run's stored events, in order."""
    return [event.wire_type() for event in runtime.engine.repository.event_store.get(run_id)]


def test_a_merge_records_its_start_before_it_completes(
    runtime: Runtime, repo: Path, tmp_path: Path
) -> None:
    run_id = merging_run(runtime, repo, tmp_path)

    runtime.merger.merge(run_id)

    run = runtime.engine.get_run(run_id)
    assert run.status == "merged" and types(runtime, run_id)[-2:] == [
        "merge.started",
        "merge.completed",
    ]
    assert run.merge_result == f"merged:{run.merge_started['merge_commit']}"
    assert git.git(repo, "rev-parse", "main") == run.merge_started["merge_commit"]
    assert in_step(repo)


def test_a_merge_killed_after_its_ref_moved_is_completed_with_that_commit(
    runtime: Runtime, repo: Path, tmp_path: Path
) -> None:
    run_id = merging_run(runtime, repo, tmp_path)
    start = killed_after_publishing(repo, "runledger/a")
    record(runtime, run_id, start)

    runtime.merger.tick()

    run = runtime.engine.get_run(run_id)
    assert (run.status, run.merge_result) == ("merged", f"merged:{start.merge_commit}")
    assert (repo / "n.txt").read_text() == "n\n" and in_step(repo)


def test_a_merge_killed_before_its_ref_moved_is_merged_again(
    runtime: Runtime, repo: Path, tmp_path: Path
) -> None:
    run_id = merging_run(runtime, repo, tmp_path)
    start = killed_after_recording(repo, "runledger/a")
    record(runtime, run_id, start)

    runtime.merger.tick()

    run = runtime.engine.get_run(run_id)
    assert run.status == "merged"
    assert run.merge_result == f"merged:{git.git(repo, 'rev-parse', 'main')}"
    assert run.merge_started["old_commit"] == start.old_commit
    assert (repo / "n.txt").read_text() == "n\n" and in_step(repo)


def test_a_run_an_older_version_left_merging_with_a_merge_head_is_merged(
    runtime: Runtime, repo: Path, tmp_path: Path
) -> None:
    run_id = merging_run(runtime, repo, tmp_path)
    message = "Merge runledger/a into main (runledger)"
    git.git(repo, "merge", "--no-ff", "--no-commit", "-m", message, "runledger/a")

    runtime.merger.tick()

    assert runtime.engine.get_run(run_id).status == "merged"
    assert (repo / "n.txt").read_text() == "n\n" and in_step(repo)


def test_the_recorded_start_reads_back_in_another_process(
    runtime: Runtime, second_runtime: Runtime, repo: Path, tmp_path: Path
) -> None:
    run_id = merging_run(runtime, repo, tmp_path)
    start = killed_after_recording(repo, "runledger/a")
    record(runtime, run_id, start)

    run = second_runtime.engine.get_run(run_id)

    assert run.merge_started == {
        "target": "main",
        "old_commit": start.old_commit,
        "tip": start.tip,
        "merge_commit": start.merge_commit,
    }
    second_runtime.merger.tick()  # the other process finishes it
    assert runtime.engine.get_run(run_id).status == "merged"


def test_a_published_merge_whose_checkout_stays_busy_still_ends_merged(
    runtime: Runtime, repo: Path, tmp_path: Path
) -> None:
    run_id = merging_run(runtime, repo, tmp_path)
    start = killed_after_publishing(repo, "runledger/a")
    record(runtime, run_id, start)
    lock = repo / ".git" / "index.lock"

    for _ in range(MERGE_TRIES):
        lock.write_text("")  # someone's git, at work in the checkout every time we look
        runtime.merger.merge(run_id)

    run = runtime.engine.get_run(run_id)
    assert (run.status, run.merge_result) == ("merged", f"merged:{start.merge_commit}")
