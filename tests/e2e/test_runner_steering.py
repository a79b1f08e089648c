"""The reference runner honours cancels and steering, per API.md "Steering" and the README's
runner section: a cancel or a `stop` ends the agent's whole process group within a second
or two (the runner follows its run's stream), and `redirect`/`amend` reach the command's
next turn in RUNLEDGER_DIRECTIVES and on stdin, acknowledged with `steering.applied`.

A real server (the `server` fixture, on SQLite and on PostgreSQL) and a real runner process.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.runner_helpers import runner, wait_for_status
from tests.e2e.runs_helpers import history, ok, read_run
from tests.support import ALICE, Server

AGENTS = Path(__file__).parent / "agents"
# The agent: a shell that starts `sleep 60` in its group and waits for it; both pids noted.
SLEEPER = "sleep 60 & echo $! > sleep.pid; echo $$ > shell.pid; wait"
# The same, deaf to SIGTERM (its `sleep` inherits the ignored signal): only SIGKILL, after
# the runner's grace period, ends it.
STUBBORN = f"trap '' TERM; {SLEEPER}"


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_file(path: Path, timeout: float = 30) -> str:
    """The file's text once it exists and is not empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def seconds_until_gone(pids: list[int], timeout: float = 10) -> float:
    """Seconds until none of the processes is alive (fails after `timeout`)."""
    start = time.monotonic()
    while any(alive(pid) for pid in pids):
        assert time.monotonic() - start < timeout, f"still alive after {timeout} s: {pids}"
        time.sleep(0.01)
    return time.monotonic() - start


def started(alice: httpx.Client, workdir: Path, task: str = "work") -> tuple[str, list[int]]:
    """A run (no repository) submitted and claimed by the runner, whose agent is sleeping
    and has nothing more to say: (the run id, the pids of the agent's shell and its `sleep`)."""
    run_id = ok(alice.post("/api/runs", json={"task": task}), 202)["run_id"]
    where = workdir / run_id
    pids = [int(wait_for_file(where / name)) for name in ("shell.pid", "sleep.pid")]
    deadline = time.monotonic() + 10
    while "step.started" not in [e["type"] for e in history(alice, run_id)]:
        assert time.monotonic() < deadline, "the runner never said it started"
        time.sleep(0.05)
    assert all(alive(pid) for pid in pids)
    return run_id, pids


@pytest.mark.parametrize("agent", [SLEEPER, STUBBORN], ids=["agent", "agent-ignoring-sigterm"])
@pytest.mark.parametrize("how", ["stop", "cancel"])
def test_a_stop_or_a_cancel_kills_the_agents_process_group_within_two_seconds(
    server: Server, tmp_path: Path, how: str, agent: str
) -> None:
    work = tmp_path / "work"
    with server.client(ALICE) as alice, runner(server, work, agent, log=tmp_path / "log"):
        run_id, pids = started(alice, work)
        if how == "stop":
            body = {"kind": "stop", "instruction": "wrong approach"}
            ok(alice.post(f"/api/runs/{run_id}/steer", json=body), 202)
        else:
            ok(alice.post(f"/api/runs/{run_id}/cancel", json={"reason": "not needed"}))

        assert seconds_until_gone(pids) < 2.0

        # The runner reports nothing for it and goes on to the next run.
        second, pids = started(alice, work, task="the next one")
        assert history(alice, run_id)[-1]["type"] == "run.cancelled"
        ok(alice.post(f"/api/runs/{second}/cancel", json={}))
        seconds_until_gone(pids)


def test_without_the_stream_a_cancel_reaches_the_agent_by_the_next_heartbeat(
    store_url: str, tmp_path: Path
) -> None:
    # No stream slot for any key (every stream is 429) and a 3 s lease: heartbeats each second.
    env = {"RUNLEDGER_MAX_STREAMS_PER_KEY": "0", "RUNLEDGER_LEASE_SECONDS": "3"}
    server = Server(store_url, tmp_path / "data", **env).start()
    work = tmp_path / "work"
    try:
        with server.client(ALICE) as alice, runner(server, work, SLEEPER, log=tmp_path / "log"):
            run_id, pids = started(alice, work)
            ok(alice.post(f"/api/runs/{run_id}/cancel", json={}))
            assert seconds_until_gone(pids) < 3.0
    finally:
        server.kill()


@pytest.fixture
def quick_server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server with a 6 s lease: the runner heartbeats every 2 s, so a directive it heard
    on the stream is soon `delivered` by a heartbeat too."""
    srv = Server(store_url, tmp_path / "data", RUNLEDGER_LEASE_SECONDS="6").start()
    try:
        yield srv
    finally:
        srv.kill()


def directives_of(alice: httpx.Client, run_id: str, position: int = 0) -> list[tuple[str, str]]:
    return [(d["kind"], d["status"]) for d in read_run(alice, run_id, position)["directives"]]


def steer(alice: httpx.Client, run_id: str, kind: str, instruction: str) -> dict[str, Any]:
    body = {"kind": kind, "instruction": instruction}
    return dict(ok(alice.post(f"/api/runs/{run_id}/steer", json=body), 202))


def test_a_redirect_stops_the_turn_and_the_next_turn_gets_the_instruction(
    server: Server, tmp_path: Path
) -> None:
    work, where = tmp_path / "work", tmp_path / "turns"
    where.mkdir()
    command = f"sh {AGENTS / 'turns.sh'}"
    with server.client(ALICE) as alice:
        with runner(server, work, command, log=tmp_path / "log", env={"TURNS_DIR": str(where)}):
            run_id = ok(alice.post("/api/runs", json={"task": "write docs"}), 202)["run_id"]
            first = int(wait_for_file(where / "pid.1"))

            directive = steer(alice, run_id, "redirect", "write tests instead")
            wait_for_status(alice, run_id, "completed")
        events = history(alice, run_id)
        assert directives_of(alice, run_id) == [("redirect", "applied")]

    assert not alive(first) and not (where / "finished.1").exists()  # the first turn was cut
    told = {
        "directive_id": directive["directive_id"],
        "kind": "redirect",
        "instruction": "write tests instead",
    }
    assert json.loads((where / "directives.2").read_text()) == [told]
    assert (where / "stdin.2").read_text() == "write docs\n\nRedirect: write tests instead"
    assert (where / "stdin.1").read_text() == "write docs"
    assert json.loads((where / "directives.1").read_text()) == []

    applied = [e for e in events if e["type"] == "steering.applied"]
    assert [e["data"] for e in applied] == [{"directive_id": directive["directive_id"]}]
    steps = [(e["type"], e["data"]) for e in events if e["type"].startswith("step.")]
    assert [(kind, data.get("turn"), data.get("stopped_by")) for kind, data in steps] == [
        ("step.started", 1, None),
        ("step.completed", 1, "redirect"),
        ("step.started", 2, None),
        ("step.completed", 2, None),
    ]


def test_an_amend_lets_the_turn_finish_then_the_next_turn_gets_it(
    quick_server: Server, tmp_path: Path
) -> None:
    work, where = tmp_path / "work", tmp_path / "turns"
    where.mkdir()
    command = f"sh {AGENTS / 'turns.sh'}"
    server = quick_server
    with server.client(ALICE) as alice:
        with runner(server, work, command, log=tmp_path / "log", env={"TURNS_DIR": str(where)}):
            run_id = ok(alice.post("/api/runs", json={"task": "write docs"}), 202)["run_id"]
            wait_for_file(where / "pid.1")

            amend = steer(alice, run_id, "amend", "and a changelog entry")
            # Delivered (the runner has it) while the first turn still runs, untouched.
            deadline = time.monotonic() + 15
            while directives_of(alice, run_id, amend["position"]) != [("amend", "delivered")]:
                assert time.monotonic() < deadline, "the amendment was never delivered"
                time.sleep(0.05)
            assert not (where / "finished.1").exists()
            (where / "go").touch()
            wait_for_status(alice, run_id, "completed")
        assert directives_of(alice, run_id) == [("amend", "applied")]

    assert (where / "finished.1").read_text() == "turn 1 finished\n"
    assert (where / "stdin.2").read_text() == "write docs\n\nAmend: and a changelog entry"
    assert [d["instruction"] for d in json.loads((where / "directives.2").read_text())] == [
        "and a changelog entry"
    ]
    assert not (where / "stdin.3").exists()


def test_stopping_the_runner_ends_the_agents_process_group(server: Server, tmp_path: Path) -> None:
    work = tmp_path / "work"
    with server.client(ALICE) as alice, runner(server, work, SLEEPER) as proc:
        _, pids = started(alice, work)
        proc.terminate()
        assert proc.wait(10) == 143
        seconds_until_gone(pids)


def state_of(pid: int) -> str:
    """The process's state letter (`T`: stopped by a signal)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for_state(pids: list[int], state: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while {state_of(pid) for pid in pids} != {state}:
        assert time.monotonic() < deadline, [state_of(pid) for pid in pids]
        time.sleep(0.02)


def test_a_pause_suspends_the_agents_process_group_and_a_resume_lets_it_go_on(
    server: Server, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    with server.client(ALICE) as alice, runner(server, work, SLEEPER, log=tmp_path / "log"):
        run_id, pids = started(alice, work)

        ok(alice.post(f"/api/runs/{run_id}/pause"))
        wait_for_state(pids, "T")

        ok(alice.post(f"/api/runs/{run_id}/resume"))
        wait_for_state(pids, "S")  # sleeping again, as before the pause

        ok(alice.post(f"/api/runs/{run_id}/pause"))
        wait_for_state(pids, "T")
        ok(alice.post(f"/api/runs/{run_id}/cancel", json={}))  # a suspended agent still ends
        assert seconds_until_gone(pids) < 2.0


def test_a_lost_lease_kills_the_agents_process_group_within_two_seconds(
    store_url: str, tmp_path: Path
) -> None:
    # A 2 s lease; the runner is frozen (SIGSTOP) past it, so its lease expires while its
    # agent (a session of its own) keeps running. Once thawed, the runner learns it lost the
    # lease (its stream, or its next heartbeat's 409) and ends the agent.
    env = {"RUNLEDGER_LEASE_SECONDS": "2", "RUNLEDGER_RETRY_BACKOFF": "60"}
    server = Server(store_url, tmp_path / "data", **env).start()
    work = tmp_path / "work"
    try:
        with (
            server.client(ALICE) as alice,
            runner(server, work, STUBBORN, log=tmp_path / "log") as proc,
        ):
            run_id, pids = started(alice, work)
            proc.send_signal(signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 20
                while "lease.expired" not in [e["type"] for e in history(alice, run_id)]:
                    assert time.monotonic() < deadline, "the lease never expired"
                    time.sleep(0.1)
                assert all(alive(pid) for pid in pids)  # the agent ran on meanwhile
            finally:
                proc.send_signal(signal.SIGCONT)
            assert seconds_until_gone(pids) < 2.0
    finally:
        server.kill()
