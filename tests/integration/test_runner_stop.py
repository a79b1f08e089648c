"""A runner told to stop (SIGTERM) ends within seconds, with its agents, even when its own
unwinding hangs: the watchdog says where its threads stood, kills the agents' process
groups and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.serve import ROOT

# A process that starts an agent (a real process group), installs the runner's SIGTERM
# handling, and hangs in a `finally` on the way out: the fault the watchdog is for.
HANGING = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from adapters.runner_process import AgentProcess
    from api.runner_cli import stop_on_sigterm

    stop_on_sigterm()
    agent = AgentProcess("sleep 60 & echo $! > sleep.pid; wait", Path(sys.argv[1]), {}, "",
                         lambda name, line: None)
    Path(sys.argv[1], "shell.pid").write_text(str(agent.pid))
    try:
        while True:
            time.sleep(0.05)
    finally:
        threading.Event().wait()  # stuck: a thread that never ends, a lock never freed
    """
)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_runner_whose_unwinding_hangs_still_ends_with_its_agents(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "sleep.pid").exists() or not (tmp_path / "shell.pid").exists():
            assert time.monotonic() < deadline, "the agent never started"
            time.sleep(0.02)
        time.sleep(0.1)  # the pid files are written whole
        pids = [int((tmp_path / name).read_text()) for name in ("shell.pid", "sleep.pid")]
        assert all(alive(pid) for pid in pids)

        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)  # a second one changes nothing
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert "still stopping after 5 s" in stderr
    assert "threading.py" in stderr  # where the main thread stood: waiting on the event
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"the agent outlived its runner: {pids}"
        time.sleep(0.02)
