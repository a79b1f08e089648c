"""The reference runner in a subprocess, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.serve import ROOT
from tests.support import RUNNER, Server


@contextmanager
def runner(
    server: Server,
    workdir: Path,
    command: str,
    *extra: str,
    log: Path | None = None,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    key: str = RUNNER,
) -> Iterator[subprocess.Popen[bytes]]:
    """`runledger runner` in a subprocess for the duration of the block (its log in `log`
    if given), started in `cwd` with `env` added to the environment."""
    with ExitStack() as stack:
        sink: int | IO[bytes] = (
            subprocess.DEVNULL if log is None else stack.enter_context(log.open("ab"))
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "runner",
                "--server",
                server.url,
                "--key",
                key,
                "--command",
                command,
                "--workdir",
                str(workdir),
                *extra,
            ],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                proc.kill()
                proc.wait()
                tail = log.read_text(errors="replace")[-6000:] if log else "(no log kept)"
                raise AssertionError(
                    f"the runner (state {state}) did not stop on SIGTERM; its log:\n{tail}"
                ) from None


def wait_for_status(client: httpx.Client, run_id: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if run.get("status") == status:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {status}: {run}")


def runner_command(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`runledger runner ARGS` run to its end (a minute at most): its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "runner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
