"""`runledger serve` in a subprocess on a free port, its output kept: the one launcher of the
tests and the benchmarks (so it imports neither pytest nor anything of theirs)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """One `runledger serve` process at a time on a fixed port (restartable)."""

    def __init__(
        self,
        database_url: str,
        env: dict[str, str],
        root: Path = ROOT,
        launcher: tuple[str, ...] = ("-m", "api.cli"),
    ) -> None:
        self.database_url = database_url
        self.root = root  # the checkout to run (a benchmark's baseline runs an older one)
        # What the interpreter runs with `serve …`: the CLI, or a benchmark's launcher script
        # that changes something for the benchmark only, then calls it (scripts/serve_unhashed.py).
        self.launcher = launcher
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.new_session = False  # its own process group, to kill it with its children
        self.serve_args: tuple[str, ...] = ()  # more flags of `serve` (`--workers 2`)
        self.ready_lines = 1  # readiness lines to wait for (one per worker)
        self.output: list[str] = []
        self._pump: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def launch(self, timeout: float) -> None:
        """Start it and wait for its readiness line (RuntimeError, with its output, if not)."""
        cmd = [sys.executable, *self.launcher, "serve", "--port", str(self.port), *self.serve_args]
        self.proc = subprocess.Popen(
            [*cmd, "--database", self.database_url],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=self.new_session,
        )
        ready = threading.Event()
        proc = self.proc
        seen = [0]

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)
                # (count them: two workers' lines written at once can share a line)
                seen[0] += line.count("ready on")
                if seen[0] >= self.ready_lines:
                    ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + "".join(self.output[-40:]))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reap()

    def kill_group(self) -> None:
        """SIGKILL its whole process group (it and the gits it started); needs new_session."""
        assert self.new_session, "the server shares the tests' process group"
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reap()

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reap()
        return self.proc.returncode

    def _reap(self) -> None:
        if self._pump is not None:
            self._pump.join(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
