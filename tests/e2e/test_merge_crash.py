"""A real `runledger serve` killed in the middle of a merge made slow by git hooks: after a
restart the run ends merged, the checkout is clean and in step, and the next merge works."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from adapters import git
from tests.e2e.runs_helpers import ok
from tests.integration.merge_helpers import run_branch
from tests.support import ALICE, RUNNER, Server, make_repo

SLOW_SECONDS = 4
# Where the merge is when the server dies: git's reference-transaction hook runs once before
# the ref moves ("prepared", the ref's lock files held) and once after ("committed"); the
# smudge filter runs while read-tree writes the checkout's files.
HOOK = """#!/bin/sh
grep -q ' refs/heads/main$' || exit 0
[ -e {slow} ] || exit 0
echo "$1" >> {marks}
sleep {seconds}
"""
SMUDGE = """#!/bin/sh
if [ -e {slow} ]; then echo checkout >> {marks}; sleep {seconds}; fi
exec cat
"""


class Slowness:
    """Hooks that make merges into main slow (while `slow` exists) and say where they are."""

    def __init__(self, repo: Path, tmp_path: Path) -> None:
        self.slow, self.marks = tmp_path / "slow", tmp_path / "marks"
        values = {"slow": self.slow, "marks": self.marks, "seconds": SLOW_SECONDS}
        hook = repo / ".git" / "hooks" / "reference-transaction"
        smudge = tmp_path / "smudge.sh"
        for path, text in ((hook, HOOK), (smudge, SMUDGE)):
            path.write_text(text.format(**values))
            path.chmod(0o755)
        git.git(repo, "config", "filter.slow.smudge", str(smudge))
        (repo / ".git" / "info" / "attributes").write_text("slow.txt filter=slow\n")
        self.slow.write_text("")

    def wait_for(self, mark: str, timeout: float = 30) -> None:
        """Until a hook said it reached `mark`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.marks.exists() and mark in self.marks.read_text().split():
                return
            time.sleep(0.02)
        raise AssertionError(f"the merge never reached {mark}")

    def stop(self) -> None:
        """Merges are fast again (a git already sleeping finishes its nap)."""
        self.slow.unlink(missing_ok=True)


# What a kill of the whole process group at each mark leaves in the repository.
LEFT_BEHIND = {
    "prepared": lambda repo, before: (repo / ".git/refs/heads/main.lock").exists(),
    "committed": lambda repo, before: (
        git.git(repo, "rev-parse", "main") != before
        and git.git(repo, "status", "--porcelain") != ""
    ),
    "checkout": lambda repo, before: (repo / ".git/index.lock").exists(),
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def crashing_server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server in its own process group; every process of its groups ends with the test."""
    srv = Server(store_url, tmp_path / "data")
    srv.new_session = True
    groups: list[int] = []
    launch = srv.launch

    def launch_and_note(timeout: float) -> None:
        launch(timeout)
        assert srv.proc is not None
        groups.append(srv.proc.pid)

    srv.launch = launch_and_note  # type: ignore[method-assign]
    try:
        yield srv.start()
    finally:
        srv.kill()
        for group in groups:  # gits and hooks a killed server left running
            with suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def reviewed_run(alice: httpx.Client, runner: httpx.Client, repo: Path, branch: str) -> str:
    """A run of a project on `repo` that reported `branch` for review; its id."""
    project = ok(
        alice.post("/api/projects", json={"name": branch, "repository_path": str(repo)}), 201
    )
    run_id = ok(alice.post(f"/api/projects/{project['project_id']}/runs", json={"task": "t"}), 202)[
        "run_id"
    ]
    lease = ok(runner.post("/api/runner/claim", json={"runner_id": "r1", "wait_seconds": 10}))
    assert lease["run"]["run_id"] == run_id
    body = {
        "fencing_token": lease["fencing_token"],
        "outcome": "changes",
        "tree_hash": git.tree_of(repo, branch),
        "branch": branch,
    }
    ok(runner.post(f"/api/runs/{run_id}/report", json=body))
    return str(run_id)


def approve_in_background(server: Server, run_id: str) -> threading.Thread:
    """Approve (the answer waits for the merge, which the test will interrupt)."""

    def approve() -> None:
        with server.client(ALICE) as alice, suppress(httpx.HTTPError):
            alice.post(f"/api/runs/{run_id}/review", json={"approved": True})

    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


def wait_until_ended(alice: httpx.Client, run_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ok(alice.get(f"/api/runs/{run_id}"))
        if run["status"] not in ("merging", "awaiting_review"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is still {run['status']}")


def assert_checkout_in_step(repo: Path) -> None:
    git_dir = repo / ".git"
    leftovers = ["MERGE_HEAD", "index.lock", "HEAD.lock", "refs/heads/main.lock"]
    assert [name for name in leftovers if (git_dir / name).exists()] == []
    assert git.git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git.git(repo, "rev-parse", "HEAD") == git.git(repo, "rev-parse", "refs/heads/main")


@pytest.mark.parametrize(
    ("mark", "kill"),
    [
        ("prepared", "group"),  # update-ref and its hook die holding the ref's lock files
        ("committed", "group"),  # the ref moved; the checkout was never updated
        ("checkout", "group"),  # read-tree dies halfway through writing the files
        ("prepared", "server"),  # git lives on and moves the ref with no server to see it
        ("checkout", "server"),  # read-tree lives on and finishes the checkout alone
    ],
)
def test_a_merge_killed_midway_ends_merged_after_a_restart_and_the_next_merge_works(
    crashing_server: Server, repo: Path, tmp_path: Path, mark: str, kill: str
) -> None:
    server = crashing_server
    (repo / "slow.txt").write_text("s\n")  # git unlinks it, then smudges its new version
    git.commit_all(repo, "a file the merge changes slowly")
    first = run_branch(repo, tmp_path, "a", {"app.py": "one\nTWO\nthree\n", "slow.txt": "S\n"})
    second = run_branch(repo, tmp_path, "b", {"b.txt": "b\n"})
    slowness = Slowness(repo, tmp_path)
    with server.client(ALICE) as alice, server.client(RUNNER) as runner:
        run_id = reviewed_run(alice, runner, repo, first)
        next_run = reviewed_run(alice, runner, repo, second)
    before = git.git(repo, "rev-parse", "main")
    approval = approve_in_background(server, run_id)
    slowness.wait_for(mark)

    server.kill_group() if kill == "group" else server.kill()
    approval.join(30)
    if kill == "group":  # the state the killed merge left is the one this case is about
        assert LEFT_BEHIND[mark](repo, before), git.git(repo, "status", "--porcelain")
    slowness.stop()
    server.start()

    with server.client(ALICE) as alice:
        run = wait_until_ended(alice, run_id)
        assert run["status"] == "merged", run
        assert git.git(repo, "rev-parse", "main") == run["merge_result"].removeprefix("merged:")
        assert (repo / "app.py").read_text() == "one\nTWO\nthree\n"
        assert (repo / "slow.txt").read_text() == "S\n"
        assert_checkout_in_step(repo)
        events = ok(alice.get(f"/api/runs/{run_id}/events"))["events"]
        assert [e["type"] for e in events[-2:]] == ["merge.started", "merge.completed"]
        assert events[-2]["data"]["merge_commit"] == run["merge_result"].removeprefix("merged:")

        approved = ok(alice.post(f"/api/runs/{next_run}/review", json={"approved": True}))
        assert approved["status"] == "merged"
        assert (repo / "b.txt").read_text() == "b\n"
        assert_checkout_in_step(repo)
