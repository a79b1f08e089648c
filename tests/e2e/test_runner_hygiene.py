"""The reference runner as people use it (README, "Run a runner"): a relative --command is
found from where the runner starts, a refused key ends it with a clear message, the
worktrees of ended runs are removed (and --cleanup removes old ones), commits carry the
repository's identity or --git-author, and --idle-timeout ends an agent gone silent.

A real server (the `server` fixture, on SQLite and on PostgreSQL) and real runner processes.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from adapters import git
from tests.e2e.runner_helpers import runner, runner_command, wait_for_status
from tests.e2e.runs_helpers import history, ok, read_run, wait_until
from tests.support import ALICE, Server, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def project_on(alice: httpx.Client, repo: Path) -> str:
    made = alice.post("/api/projects", json={"name": "p", "repository_path": str(repo)})
    return str(ok(made, 201)["project_id"])


def submit(alice: httpx.Client, project_id: str, task: str = "work") -> str:
    made = alice.post(f"/api/projects/{project_id}/runs", json={"task": task})
    return str(ok(made, 202)["run_id"])


def run_dirs(workdir: Path) -> list[str]:
    return sorted(p.name for p in workdir.iterdir()) if workdir.exists() else []


def no_identity(tmp_path: Path) -> dict[str, str]:
    """An environment in which git knows no user.name or user.email (no global config)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}


def test_a_relative_command_is_found_from_the_runners_directory(
    server: Server, tmp_path: Path
) -> None:
    here = tmp_path / "project"
    (here / "scripts").mkdir(parents=True)
    agent = here / "scripts" / "my-agent.sh"
    agent.write_text('#!/bin/sh\necho "agent says: $(cat)"\n')
    agent.chmod(0o755)
    with server.client(ALICE) as alice:
        run_id = ok(alice.post("/api/runs", json={"task": "hello"}), 202)["run_id"]
        with runner(server, tmp_path / "work", "./scripts/my-agent.sh --verbose", cwd=here):
            wait_for_status(alice, run_id, "completed")
        said = [e["data"].get("text") for e in history(alice, run_id) if e["type"] == "tool.output"]
        assert "agent says: hello" in said


@pytest.mark.parametrize(
    ("key", "expected"),
    [("not-a-key", "does not know this key"), (ALICE, "not a runner key")],
    ids=["unknown-key-401", "user-key-403"],
)
def test_a_refused_key_ends_the_runner_with_a_clear_message(
    server: Server, tmp_path: Path, key: str, expected: str
) -> None:
    started = time.monotonic()
    done = runner_command(
        "--server",
        server.url,
        "--key",
        key,
        "--command",
        "true",
        "--workdir",
        str(tmp_path / "work"),
    )
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert time.monotonic() - started < 30


def test_the_worktrees_of_ended_runs_are_removed_and_their_branches_kept(
    server: Server, repo: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    command = (
        'if grep -q fail <<EOF\n$(cat)\nEOF\nthen exit 1; fi; echo "$RUNLEDGER_RUN_ID" >> app.py'
    )
    with server.client(ALICE) as alice:
        project_id = project_on(alice, repo)
        changed = submit(alice, project_id, "change it")
        failed = submit(alice, project_id, "fail please")
        with runner(server, work, command):
            wait_for_status(alice, changed, "awaiting_review")
            wait_for_status(alice, failed, "failed")
            deadline = time.monotonic() + 10
            while run_dirs(work) and time.monotonic() < deadline:
                time.sleep(0.1)
        assert run_dirs(work) == []
        listed = git.git(repo, "worktree", "list", "--porcelain")
        assert listed.count("worktree ") == 1  # the repository's own checkout only
        assert git.branch_exists(repo, f"runledger/{changed}")

        # A request for changes is done in a fresh worktree of the same branch.
        ok(
            alice.post(
                f"/api/runs/{changed}/review",
                json={"approved": False, "request_changes": True, "comment": "more"},
            )
        )
        with runner(server, work, command):
            # (the read model may still show the first review: wait for the second one)
            wait_until(
                lambda: (
                    (run := read_run(alice, changed, 0))["revision"] == 1
                    and run["status"] == "awaiting_review"
                ),
                timeout=60,
            )
        log = git.git(repo, "log", "--format=%s", f"runledger/{changed}")
        assert log.splitlines()[:2] == ["runledger: change it", "runledger: change it"]


def test_cleanup_removes_leftover_worktrees_and_scratch_directories(
    repo: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git.add_worktree(repo, work / "11111111-1111-4111-8111-111111111111", "runledger/old", "main")
    (work / "22222222-2222-4222-8222-222222222222").mkdir()
    (work / "22222222-2222-4222-8222-222222222222" / "notes.txt").write_text("scratch")

    done = runner_command("--cleanup", "--workdir", str(work))

    assert done.returncode == 0, done.stderr
    assert "removed 2 run directories" in done.stdout
    assert run_dirs(work) == []
    assert git.git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git.branch_exists(repo, "runledger/old")


@pytest.mark.parametrize("configured", [True, False], ids=["repo-identity", "git-author"])
def test_commits_carry_the_repositorys_identity_or_the_git_author(
    server: Server, repo: Path, tmp_path: Path, configured: bool
) -> None:
    env = no_identity(tmp_path)
    if configured:
        git.git(repo, "config", "user.name", "Ada Lovelace")
        git.git(repo, "config", "user.email", "ada@example.org")
    with server.client(ALICE) as alice:
        run_id = submit(alice, project_on(alice, repo))
        extra = () if configured else ("--git-author", "Build Bot <bot@example.org>")
        with runner(server, tmp_path / "work", "echo more >> app.py", *extra, env=env):
            wait_for_status(alice, run_id, "awaiting_review")
    who = git.git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", f"runledger/{run_id}")
    expected = "Ada Lovelace <ada@example.org>" if configured else "Build Bot <bot@example.org>"
    assert who == f"{expected}|{expected}"


def test_an_agent_silent_past_the_idle_timeout_is_ended_and_the_run_fails_transiently(
    server: Server, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    command = "echo thinking; sleep 60 & echo $! > sleep.pid; wait"
    with server.client(ALICE) as alice:
        run_id = ok(alice.post("/api/runs", json={"task": "t"}), 202)["run_id"]
        started = time.monotonic()
        with runner(server, work, command, "--idle-timeout", "1"):
            run = wait_for_status(alice, run_id, "failed")
        assert time.monotonic() - started < 20
        assert run["failure"]["category"] == "runner-transient"
        assert "printed nothing for 1 s" in run["failure"]["message"]


def test_git_author_must_be_a_name_and_an_email(tmp_path: Path) -> None:
    done = runner_command(
        "--key",
        "k",
        "--command",
        "true",
        "--git-author",
        "just a name",
    )
    assert done.returncode == 2 and "--git-author wants 'NAME <EMAIL>'" in done.stderr
