"""`runledger serve` in a subprocess, the HTTP calls that hold runs, and its CPU accounting."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from benchload import ROOT, BenchError

from tests.serve import ServeProcess

USER_KEY, RUNNER_KEY = "ka", "kr"
API_KEYS = f"{USER_KEY}=alice:user,kb=bob:user,{RUNNER_KEY}=runner-1:runner"
JSON_HEADERS = {"Content-Type": "application/json"}


# -- the server ------------------------------------------------------------------------------


@cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: httpx builds a new one per client (~0.1 s each)."""
    return ssl.create_default_context()


class Server(ServeProcess):
    """`runledger serve` with the benchmark's keys and no lease expiring mid-run."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        poll_interval: float | None = None,
        client_timeout: float = 30.0,
        root: Path = ROOT,  # the checkout whose code it runs (--code-dir)
        launcher: tuple[str, ...] = ("-m", "api.cli"),  # see ServeProcess
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLEDGER_")}
        env.update(
            RUNLEDGER_API_KEYS=API_KEYS,
            RUNLEDGER_DATA_DIR=str(data_dir),
            RUNLEDGER_LEASE_SECONDS="3600",  # no lease expires mid-benchmark
        )
        if poll_interval is not None:
            env["RUNLEDGER_POLL_INTERVAL"] = str(poll_interval)
        super().__init__(database_url, env, root, launcher)
        self.client_timeout = client_timeout

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait for its readiness line."""
        try:
            self.launch(timeout)
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None

    def start_for(self, store: str) -> None:
        """Start it, then check that it runs on the expected store."""
        self.start()
        with self.client(USER_KEY) as c:
            info = c.get("/api/server/info").json()
        if info.get("store") != store:
            raise BenchError(f"server says store {info.get('store')!r}, expected {store!r}")

    def check_alive(self) -> None:
        """Raise when the server process has exited."""
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError("server exited unexpectedly:\n" + "".join(self.output[-40:]))

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs; returns the exit code."""
        return super().stop(grace=20.0)

    def findings(self, drop_timestamps: bool = False) -> list[str]:
        """Problems in the log: ERROR/WARNING lines and each traceback's exception, counted."""
        # drop_timestamps: count log lines that differ only in their leading time as one.
        found: dict[str, int] = {}
        in_traceback = False
        for raw in self.output:
            line = raw.rstrip()
            if line.startswith("Traceback"):
                in_traceback = True
                continue
            if in_traceback:
                if line.startswith((" ", "\t")) or not line:
                    continue
                in_traceback = False
                key = f"exception: {line}"
            elif any(m in line for m in (" ERROR ", " CRITICAL ", " WARNING ", "ERROR:")):
                timestamped = drop_timestamps and line[:1].isdigit()
                key = line.split(" ", 2)[-1] if timestamped else line
            else:
                continue
            found[key] = found.get(key, 0) + 1
        return [f"{n}x {key}" for key, n in found.items()]

    def cpu_seconds(self) -> float:
        """User+system CPU the server process and its live children (the workers of
        `serve --workers`) have used so far."""
        if self.proc is None:
            return 0.0
        me = self.proc.pid
        return processes_cpu(lambda pid, _, fields: me in (pid, int(fields[1])))

    def wait_quiet(self) -> None:
        """Wait until it idles (see wait_quiet): the work a load left it (projections)
        is counted with that load's, not with whatever is measured next."""
        wait_quiet(self.cpu_seconds)

    def client(self, key: str, **kw: Any) -> httpx.Client:
        """A sync HTTP client speaking with one key."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=self.client_timeout,
            verify=ssl_context(),
            **kw,
        )


class LeanClient:
    """One keep-alive HTTP/1.1 connection on a bare socket, for load loops.

    On a 2-core machine the load generator's CPU is taken from the server under test, and
    a thread's time holding the interpreter delays the other clients' threads: the loops
    that measure throughput use this, as the raw baselines use bare psycopg. httpx spends
    about 2 ms of interpreter time per request; the stdlib's http.client took 0.22 ms of
    the load generator's CPU per single-event command at 16 clients (its header parsing, a
    message object per answer); this, one `sendall` of prebuilt headers and the body, then
    the status line and Content-Length read off the answer's head, 0.04-0.05 ms. It reads
    only what the server sends these loops: answers with a Content-Length, or without a
    body (204, 304; an interim 1xx head is skipped); a streamed one is refused.
    """

    def __init__(self, server: Server, key: str) -> None:
        self._address = ("127.0.0.1", server.port)
        self._head = (f"Host: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {key}\r\n").encode()
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST a JSON body; the status and the whole answer."""
        head = b"POST %s HTTP/1.1\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        return self._exchange(head % (path.encode(), self._head, len(body)) + body)

    def get(self, path: str) -> tuple[int, bytes]:
        """GET; the status and the whole answer."""
        return self._exchange(b"GET %s HTTP/1.1\r\n%s\r\n" % (path.encode(), self._head))

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=60)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = bytearray()
        try:
            self._sock.sendall(request)
            return self._answer()
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise

    def _answer(self) -> tuple[int, bytes]:
        status, fields = self._read_head()
        while 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            status, fields = self._read_head()
        if status in (204, 304):  # no body, whatever the head says
            length = 0
        elif b"content-length" in fields and b"transfer-encoding" not in fields:
            length = int(fields[b"content-length"])
        else:
            raise BenchError(f"an answer LeanClient cannot read (no length): {status} {fields}")
        while len(self._buffer) < length:
            self._more()
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        if fields.get(b"connection") == b"close":
            self.close()
        return status, body

    def _read_head(self) -> tuple[int, dict[bytes, bytes]]:
        """The next answer's status and header fields (names and values lowercased)."""
        end = self._buffer.find(b"\r\n\r\n")
        while end < 0:
            self._more()
            end = self._buffer.find(b"\r\n\r\n")
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[: end + 4]
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        return int(lines[0].split(b" ", 2)[1]), fields

    def _more(self) -> None:
        assert self._sock is not None
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection before a whole answer")
        self._buffer += data


# -- runs held by the benchmark --------------------------------------------------------------


def submit_run(user: httpx.Client, task: str) -> str:
    """POST /api/runs; the new run's id."""
    r = user.post("/api/runs", json={"task": task})
    if r.status_code != 202:
        raise BenchError(f"submit: {r.status_code} {r.text[:300]}")
    return str(r.json()["run_id"])


def claim_run(runner: httpx.Client, wait: float, runner_id: str) -> dict[str, Any]:
    """POST /api/runner/claim; the lease (BenchError on anything but 200)."""
    r = runner.post("/api/runner/claim", json={"runner_id": runner_id, "wait_seconds": wait})
    if r.status_code != 200:
        raise BenchError(f"claim: {r.status_code} {r.text[:300]}")
    return dict(r.json())


def confirm(runner: httpx.Client, lease: dict[str, Any]) -> int:
    """Confirm a claim with a heartbeat, as a runner does at once (the server gives back a
    claim its runner does not confirm within RUNLEDGER_CLAIM_CONFIRM_SECONDS); the run's
    sequence."""
    beat = runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")
    if beat.status_code != 200:
        raise BenchError(f"heartbeat: {beat.status_code} {beat.text[:300]}")
    return int(beat.json()["sequence"])


def report_no_changes(runner: httpx.Client, run_id: str, token: int) -> None:
    """Report `no_changes`, so that the run leaves the queue."""
    r = runner.post(
        f"/api/runs/{run_id}/report", json={"fencing_token": token, "outcome": "no_changes"}
    )
    if r.status_code != 200:
        raise BenchError(f"report: {r.status_code} {r.text[:300]}")


@dataclass
class Held:
    """A run this benchmark holds a lease on, and the run's last sequence so far."""

    run_id: str
    token: int
    sequence: int


def open_runs(server: Server, n: int, task: str, runner_id: str) -> list[Held]:
    """Submit n runs (`{task} {i}`) as the user and claim them all as the runner, each
    claim confirmed at once (`confirm`)."""
    with server.client(USER_KEY) as user:
        wanted = [submit_run(user, f"{task} {i}") for i in range(n)]
    held: dict[str, Held] = {}
    with server.client(RUNNER_KEY) as runner:
        while len(held) < n:
            lease = claim_run(runner, 10, runner_id)
            run = lease["run"]
            sequence = confirm(runner, lease)
            held[run["run_id"]] = Held(run["run_id"], int(lease["fencing_token"]), sequence)
    if set(held) != set(wanted):
        raise BenchError(f"claimed other runs than submitted: {sorted(set(held) - set(wanted))}")
    return [held[run_id] for run_id in wanted]


# -- CPU accounting --------------------------------------------------------------------------


def processes_cpu(pick: Callable[[int, str, list[str]], bool]) -> float:
    """CPU seconds (user+system) used so far by the live processes that `pick(pid, name,
    fields of /proc/<pid>/stat after the name)` chooses (Linux)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(")")
        except OSError:
            continue
        fields = rest.split()
        if pick(int(stat.parent.name), head.partition("(")[2], fields):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL process on this machine."""
    return processes_cpu(lambda _, name, __: name == "postgres")


def wait_quiet(cpu_seconds: Callable[[], float], window: float = 0.25, limit: float = 10.0) -> None:
    """Wait (up to `limit` s) until the processes whose CPU `cpu_seconds` sums use under 10 %
    of a core over a `window`. A sum that went down (a process it counted has exited, and
    its CPU with it) is not quiet: wait another window."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = cpu_seconds()
        time.sleep(window)
        if 0 <= cpu_seconds() - before < 0.1 * window:
            return


Mark = tuple[float, float, float, float]


def cpu_mark(server: Server | None) -> Mark:
    """(wall clock, this process's CPU, the server's CPU, PostgreSQL's CPU) now."""
    served = server.cpu_seconds() if server else 0.0
    return time.perf_counter(), time.process_time(), served, postgres_cpu()


def cpu_text(
    before: Mark, after: Mark, per: tuple[int, str] | None = None, postgres: bool = False
) -> str:
    """CPU between two marks: % of a core (server, benchmark, and PostgreSQL's processes
    when `postgres`), server CPU per unit of `per`."""
    # CPU per command or event is distorted far less than rates by load elsewhere on the box.
    wall = max(after[0] - before[0], 1e-9)
    bench = 100 * (after[1] - before[1]) / wall
    pg = f" pg {100 * (after[3] - before[3]) / wall:.0f}%" if postgres else ""
    if not (after[2] or before[2]):
        return f"cpu bench {bench:.0f}%{pg}"
    server = after[2] - before[2]
    text = f"cpu srv {100 * server / wall:.0f}% bench {bench:.0f}%{pg}"
    if per and per[0]:
        text += f", srv {1000 * server / per[0]:.1f} ms CPU/{per[1]}"
    return text
