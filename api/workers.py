"""`runledger serve --workers N`: N server processes behind one port.

Each worker is a whole `runledger serve` (its own runtime, change feed and SSE hub; one of
them leads the background work by the worker lock, docs/operations.md), started as a child
process that listens on the port with SO_REUSEPORT, so that the kernel spreads new
connections over them. This process only supervises: it holds the port (bound, never
listening, so that a restarting worker always gets it back), starts the workers, restarts
one that dies, and passes SIGTERM and SIGINT on to all of them.

With `pin`, worker i is kept on the i-th CPU this process may use (`--cpu`, round the CPUs
again when there are more workers than CPUs; a replacement takes its predecessor's): a
process's threads then pass its interpreter lock to each other on one core instead of
waking another core for each hand-over, and the workers never crowd onto one core
(docs/operations.md, "Several processes behind one port").
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

log = logging.getLogger("runledger.workers")

# A worker that exits (not killed by a signal) sooner than this after its start could not
# start: a setting, the database, the port. Starting it again would fail again.
STARTUP_SECONDS = 10.0
RESTART_DELAY = 1.0  # before a worker that died is started again
STOP_GRACE = 30.0  # after SIGTERM, before the workers still running are killed


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT (port 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, in order (Linux)."""
    return sorted(os.sched_getaffinity(0))


def supervise(host: str, port: int, workers: int, serve_args: list[str], pin: bool = False) -> int:
    """Run `workers` workers on (host, port) until SIGTERM or SIGINT, or until one fails to
    start (then they all stop); the exit status: 0, or the failed worker's. With `pin`, each
    is kept on a CPU of its own (see the module's docstring)."""
    held = reuse_port_socket(host, port)
    port = held.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        *serve_args,
        "--host",
        host,
        "--port",
        str(port),
        "--reuse-port",
    ]
    stopping = threading.Event()

    def stop(sig: int, frame: FrameType | None) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    print(f"runledger: {workers} workers on http://{host}:{port}", flush=True)
    cpus = usable_cpus() if pin else []
    running = [
        _Worker(command + (["--cpu", str(cpus[i % len(cpus)])] if pin else []))
        for i in range(workers)
    ]
    status = 0
    try:
        while not stopping.wait(0.2):
            for worker in running:
                code = worker.proc.poll()
                if code is None or stopping.is_set():
                    continue
                if code > 0 and worker.age() < STARTUP_SECONDS:
                    log.error(
                        "a worker ended %.1f s after its start (status %s)", worker.age(), code
                    )
                    status = code
                    stopping.set()
                    break
                log.warning("worker %s ended (status %s); starting another", worker.proc.pid, code)
                time.sleep(RESTART_DELAY)
                worker.start()
    finally:
        _stop_all(running)
        held.close()
    return status


class _Worker:
    """One child `runledger serve` process."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.start()

    def start(self) -> None:
        self.started = time.monotonic()
        # Its own process group: a Ctrl-C in the terminal reaches the supervisor alone,
        # which stops the workers in order.
        self.proc = subprocess.Popen(self.command, start_new_session=True)

    def age(self) -> float:
        return time.monotonic() - self.started


def _stop_all(workers: list[_Worker]) -> None:
    """SIGTERM to each worker (a graceful stop), SIGKILL to those left after STOP_GRACE."""
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.terminate()
    deadline = time.monotonic() + STOP_GRACE
    for worker in workers:
        try:
            worker.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker %s did not stop in %.0f s; killing it", worker.proc.pid, STOP_GRACE)
            worker.proc.kill()
            worker.proc.wait()
