"""`runledger serve --workers N` (api/workers.py): N processes serve one port, one of them
leads; a worker that dies is replaced; SIGTERM stops them all; one that cannot start stops
the lot with its exit status."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serve import ROOT
from tests.support import ALICE, Server


def workers_of(server: Server) -> list[int]:
    """The supervisor's child processes."""
    assert server.proc is not None
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.proc.pid:
            found.append(int(stat.parent.name))
    return found


def leaders_seen(server: Server, connections: int = 40) -> list[bool]:
    """`leader` from /api/diagnostics over that many new connections."""
    seen = []
    for _ in range(connections):
        with server.client(ALICE) as client:  # a new connection each: the kernel spreads them
            seen.append(client.get("/api/diagnostics").json()["worker"]["leader"])
    return seen


def test_two_workers_share_the_port_and_replace_one_that_dies(
    store_url: str, tmp_path: Path
) -> None:
    server = Server(store_url, tmp_path / "data")
    server.serve_args, server.ready_lines = ("--workers", "2"), 2
    server.start(timeout=60)
    try:
        assert len(workers_of(server)) == 2
        assert set(leaders_seen(server)) == {True, False}  # both answer; exactly one leads

        # What one process appends, another reads at once (read-your-writes across them).
        for _ in range(10):
            with server.client(ALICE) as writer:
                made = writer.post("/api/runs", json={"task": "t"})
                assert made.status_code == 202, made.text
            with server.client(ALICE) as reader:
                answer = reader.get(
                    f"/api/runs/{made.json()['run_id']}",
                    params={"min_position": made.json()["position"]},
                )
                assert answer.status_code == 200, answer.text

        victim = workers_of(server)[0]
        readiness = sum("ready on" in line for line in server.output)
        subprocess.run(["kill", "-9", str(victim)], check=True)
        deadline = time.monotonic() + 60
        while sum("ready on" in line for line in server.output) == readiness:
            assert time.monotonic() < deadline, "no worker replaced the one that died"
            time.sleep(0.1)
        workers = workers_of(server)
        assert len(workers) == 2 and victim not in workers
        assert set(leaders_seen(server)) == {True, False}
    finally:
        children = workers_of(server)
        code = server.stop()
    assert code == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), f"worker {pid} left"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_workers_that_cannot_start_stop_the_supervisor_with_their_status(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--workers",
            "2",
            "--port",
            "0",
            "--database",
            f"sqlite:///{blocker}/store.db",  # its directory cannot be made
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "RUNLEDGER_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    assert "ready on" not in result.stdout


def test_a_sigterm_during_startup_stops_every_worker(store_url: str, tmp_path: Path) -> None:
    server = Server(store_url, tmp_path / "data")
    server.serve_args = ("--workers", "2")
    server.start(timeout=60)  # the first readiness line: the other may still be starting
    children = workers_of(server)
    assert server.stop(45) == 0  # SIGTERM
    deadline = time.monotonic() + 5
    while any(_state(pid) not in ("gone", "Z") for pid in children):
        assert time.monotonic() < deadline, [_state(pid) for pid in children]
        time.sleep(0.05)
    with httpx.Client(base_url=server.url, timeout=2) as client:
        try:
            client.get("/health")
        except httpx.TransportError:
            return
    raise AssertionError("something still answers on the port")


def threads_cpus(pid: int) -> set[tuple[int, ...]]:
    """The CPUs each thread of a process may run on."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.add(tuple(sorted(os.sched_getaffinity(int(task.name)))))
        except OSError:  # (a thread that ended meanwhile)
            continue
    return found


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_pinned_workers_each_keep_to_a_cpu_of_their_own(store_url: str, tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server = Server(store_url, tmp_path / "data")
    server.serve_args, server.ready_lines = ("--workers", "2", "--pin"), 2
    server.start(timeout=60)
    try:
        with server.client(ALICE) as client:  # threads started, the store's among them
            assert client.post("/api/runs", json={"task": "t"}).status_code == 202
        kept = sorted(sorted(threads_cpus(pid)) for pid in workers_of(server))
        wanted = sorted([(cpus[i % len(cpus)],)] for i in range(2))
        assert kept == wanted
    finally:
        assert server.stop() == 0


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_one_pinned_process_keeps_to_the_first_cpu(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server = Server(f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "data")
    server.serve_args = ("--pin",)
    server.start(timeout=60)
    try:
        assert server.proc is not None
        assert threads_cpus(server.proc.pid) == {(cpus[0],)}
    finally:
        assert server.stop() == 0
