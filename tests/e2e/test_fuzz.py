"""4,000 hostile requests per store: no 5xx, and the keep-alive connection is never dropped.

A seeded generator (tests/e2e/fuzzing.py) covers every route with odd methods, ids and
traversal in paths, loose and huge numbers in query parameters and headers, random JSON
and garbage bodies, valid and invalid keys of both roles; against real runs and projects,
including a run in a project whose branch does not exist. A failure prints the request
index and the request: the same seed replays it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from adapters import git
from tests.e2e.fuzzing import Generator, Sender, World
from tests.support import ALICE, BOB, RUNNER, Server, make_repo

# Another seed or more requests explore further: RUNLEDGER_FUZZ_SEED=7 RUNLEDGER_FUZZ_REQUESTS=20000
REQUESTS = int(os.environ.get("RUNLEDGER_FUZZ_REQUESTS", 4000))
SEED = int(os.environ.get("RUNLEDGER_FUZZ_SEED", 20261202))
# A bound for CI, not a speed target (4,000 take 10-30 s here): requests that hang eat it.
BUDGET_SECONDS = 5 * 60 * max(1, REQUESTS // 4000)


def give_branch(repo: Path, tmp_path: Path, run_id: str) -> None:
    """The run's branch off main, adding `a.txt` and a file named `*`."""
    worktree = tmp_path / f"wt-{run_id}"
    git.add_worktree(repo, worktree, f"runledger/{run_id}", "main")
    (worktree / "a.txt").write_text("a\n")
    (worktree / "*").write_text("star\n")
    git.commit_all(worktree, "run")
    git.remove_worktree(repo, worktree)


def created(answer: httpx.Response, key: str) -> str:
    assert answer.status_code in (201, 202), answer.text
    return str(answer.json()[key])


def build_world(server: Server, tmp_path: Path) -> World:
    """Alice's and Bob's runs and projects, one run claimed, branches real and missing."""
    repo = make_repo(tmp_path / "repo")
    with (
        server.client(ALICE) as alice,
        server.client(BOB) as bob,
        server.client(RUNNER) as runner,
    ):
        claimed = created(alice.post("/api/runs", json={"task": "claimed"}), "run_id")
        claim = runner.post("/api/runner/claim", json={"runner_id": "fz", "wait_seconds": 10})
        assert claim.status_code == 200, claim.text
        on_repo = created(
            alice.post("/api/projects", json={"name": "main", "repository_path": str(repo)}),
            "project_id",
        )
        ghost = created(
            alice.post(
                "/api/projects",
                json={"name": "ghost", "repository_path": str(repo), "default_branch": "ghost"},
            ),
            "project_id",
        )
        in_ghost = created(alice.post(f"/api/projects/{ghost}/runs", json={"task": "g"}), "run_id")
        in_repo = created(alice.post(f"/api/projects/{on_repo}/runs", json={"task": "r"}), "run_id")
        for run_id in (in_ghost, in_repo):
            give_branch(repo, tmp_path, run_id)
        cancelled = created(alice.post("/api/runs", json={"task": "c"}), "run_id")
        assert alice.post(f"/api/runs/{cancelled}/cancel", json={}).status_code == 200
        bobs = created(bob.post("/api/runs", json={"task": "b"}), "run_id")
        bobs_project = created(bob.post("/api/projects", json={"name": "b"}), "project_id")
    return World(
        runs=[claimed, in_ghost, in_repo, cancelled, bobs],
        projects=[on_repo, ghost, bobs_project],
        leases=[str(claim.json()["lease_id"])],
    )


def test_hostile_requests_get_no_5xx_and_keep_the_connection(
    server: Server, tmp_path: Path
) -> None:
    generator = Generator(SEED, build_world(server, tmp_path))
    sender = Sender("127.0.0.1", server.port)
    failures: list[str] = []
    started = time.monotonic()
    try:
        for index in range(REQUESTS):
            if time.monotonic() - started > BUDGET_SECONDS:
                failures.append(f"out of the {BUDGET_SECONDS} s budget after {index} requests")
                break
            request = generator.next()
            status, dropped = sender.send(request)
            if dropped is not None:
                # A reset while sending means the previous answer closed the connection.
                failures.append(f"#{index} lost the connection ({dropped}): {request.describe()}")
            elif status >= 500:
                failures.append(f"#{index} answered {status}: {request.describe()}")
    finally:
        sender.close()
    elapsed = time.monotonic() - started
    assert not failures, f"{len(failures)} failures in {elapsed:.0f} s:\n" + "\n".join(
        failures[:15]
    )
    with server.client(ALICE) as alice:
        assert alice.get("/health").status_code == 200
