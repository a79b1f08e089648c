"""The agent's command as a process group: started in a session of its own, its output read
line by line, and stopped as a whole (SIGTERM to the group, SIGKILL after a short grace),
so that a cancel or a redirect ends every process the agent started, not only the shell."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL

_live_groups: set[int] = set()  # the process groups of the agents started and not yet ended


class AgentProcess:
    """One run of the command (a turn), with a reader thread per output stream."""

    def __init__(
        self,
        command: str,
        where: Path,
        env: dict[str, str],
        stdin: str,
        line: Callable[[str, str], None],
    ) -> None:
        self.proc = subprocess.Popen(
            command,
            shell=True,
            cwd=where,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group, which stop() ends whole
        )
        _live_groups.add(self.proc.pid)
        self._readers = [
            threading.Thread(target=_pump, args=(stream, name, line), daemon=True)
            for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
            if stream is not None
        ]
        for reader in self._readers:
            reader.start()
        threading.Thread(target=self._feed, args=(stdin,), daemon=True).start()

    @property
    def pid(self) -> int:
        """The process id, which is also its process group's id."""
        return self.proc.pid

    def running(self) -> bool:
        """True until the command's shell has exited."""
        return self.proc.poll() is None

    def suspend(self, suspended: bool) -> None:
        """Stop the whole group where it is (SIGSTOP), or let it go on (SIGCONT)."""
        _signal_group(self.pid, signal.SIGSTOP if suspended else signal.SIGCONT)

    def stop(self, grace: float = KILL_GRACE) -> None:
        """End the whole process group: SIGTERM, then SIGKILL to whatever is left after
        `grace` seconds (or once the shell has gone, for children that outlived it)."""
        _signal_group(self.pid, signal.SIGTERM)
        _signal_group(self.pid, signal.SIGCONT)  # a suspended group handles its SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        _signal_group(self.pid, signal.SIGKILL)
        self.proc.wait()
        _live_groups.discard(self.pid)

    def finish(self) -> int:
        """The exit status, once the output has been read. What the command left running
        in its group is ended (a turn's processes do not outlive it); a child that escaped
        the group and keeps the pipes open is not waited for long."""
        code = self.proc.wait()
        _signal_group(self.pid, signal.SIGTERM)
        _live_groups.discard(self.pid)
        for reader in self._readers:
            reader.join(timeout=5)
        return int(code)

    def _feed(self, text: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(text)
            stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the command did not read its stdin: that is its business


def kill_every_group() -> None:
    """SIGKILL every agent's process group still running (a stopped one too): the last
    resort of a runner that must end at once."""
    for pgid in list(_live_groups):
        _signal_group(pgid, signal.SIGKILL)


def _pump(stream: IO[str], name: str, line: Callable[[str, str], None]) -> None:
    for text in stream:
        line(name, text)
    stream.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, sig)
