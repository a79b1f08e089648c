"""The gate protocol between the agent's command and the reference runner: how an agent
opens a gate (asks a person) and waits for the resolution.

For each turn the runner makes a private directory with two named pipes and passes their
paths in `RUNLEDGER_GATE_REQUESTS` and `RUNLEDGER_GATE_RESPONSES`. The agent (or any
process it starts) writes one JSON line to the first:

    {"gate": {"kind": "question", "prompt": "Which database?"}}

(`kind` is `tool_approval`, `shell_approval` or `question`, the default; optional `tool`,
`command_sha256` and `gate_id`, which the runner makes up when missing), then reads one JSON
line from the second:

    {"gate_id": "…", "decision": "answer", "answer": "PostgreSQL", "scope": "once"}

`decision` is `approve` or `deny` for approvals, `answer` for a question. A request the
runner cannot send gets `{"error": "…"}` instead. In between, the runner appends
`gate.opened`, waits for `gate.resolved` (on the run's stream, or a heartbeat answer), and
acknowledges it with `gate.acknowledged`. One gate at a time: requests are handled in
order, each answered before the next is read. In a shell:

    echo '{"gate": {"prompt": "Deploy?"}}' > "$RUNLEDGER_GATE_REQUESTS"
    read -r reply < "$RUNLEDGER_GATE_RESPONSES"

The runner holds both pipes open for reading and writing, so the agent's opens never block
and a reply written before the agent reads waits in the pipe. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.runner_news import News

log = logging.getLogger("runledger.runner")
# The server's checks of `gate.opened` (domain/runs/gate_rules.py), made here first: a gate
# the server would refuse is answered with an error, never sent with the agent's output.
GATE_KINDS = ("tool_approval", "shell_approval", "question")
MAX_ID = 200
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_REQUEST = 1_000_000  # bytes of one request line


class GateDesk:
    """The two pipes of one turn, and the thread that serves the agent's requests."""

    def __init__(
        self, news: News, send: Callable[[str, dict[str, Any]], None], used: set[str]
    ) -> None:
        self.news, self.send = news, send
        self.used = used  # the gate ids of this session: each is opened once
        self.directory = Path(tempfile.mkdtemp(prefix="runledger-gates-"))
        self.requests = self.directory / "requests"
        self.responses = self.directory / "responses"
        os.mkfifo(self.requests, 0o600)
        os.mkfifo(self.responses, 0o600)
        # Read-write on both (Linux and the BSDs allow it on a FIFO): opening never blocks,
        # and neither side ever sees an end of file because the other closed.
        self._in = os.open(self.requests, os.O_RDWR)
        self._out = os.open(self.responses, os.O_RDWR | os.O_NONBLOCK)
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def env(self) -> dict[str, str]:
        """The variables that tell the agent where the pipes are."""
        return {
            "RUNLEDGER_GATE_REQUESTS": str(self.requests),
            "RUNLEDGER_GATE_RESPONSES": str(self.responses),
        }

    def close(self) -> None:
        """End the turn's desk: a gate still waiting is given up, the pipes are removed."""
        self.closed.set()
        with contextlib.suppress(OSError):  # wakes the reader (never blocks on a full pipe)
            waker = os.open(self.requests, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(waker, b"\n")
            finally:
                os.close(waker)
        self._thread.join(timeout=5)
        for fd in (self._in, self._out):
            os.close(fd)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _serve(self) -> None:
        pending = b""
        while not self.closed.is_set():
            chunk = os.read(self._in, 65536)
            pending += chunk
            while b"\n" in pending and not self.closed.is_set():
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    self._handle(line)
            if len(pending) > MAX_REQUEST:
                pending = b""
                self._respond({"error": f"a request line is at most {MAX_REQUEST} bytes"})

    def _handle(self, line: bytes) -> None:
        try:
            gate = gate_request(line, self.used)
        except ValueError as exc:
            self._respond({"error": str(exc)})
            return
        gate_id = gate["gate_id"]
        self.used.add(gate_id)
        self.send("gate.opened", gate)
        resolution = self.news.wait_for_resolution(gate_id, self.closed.is_set)
        if resolution is None:
            return  # the turn or the lease ended first: nobody is waiting any more
        self.send("gate.acknowledged", {"gate_id": gate_id})
        self._respond(resolution)

    def _respond(self, body: dict[str, Any]) -> None:
        """Write one JSON line for the agent (without blocking past the turn's end)."""
        rest = memoryview(json.dumps(body).encode() + b"\n")
        while rest and not self.closed.is_set():
            try:
                rest = rest[os.write(self._out, rest) :]
            except BlockingIOError:
                select.select([], [self._out], [], 0.2)


def gate_request(line: bytes, used: set[str]) -> dict[str, Any]:
    """The `gate.opened` data for one request line; ValueError saying what is wrong."""
    try:
        request = json.loads(line)
    except ValueError:
        raise ValueError("a request is one JSON object per line") from None
    gate = request.get("gate") if isinstance(request, dict) else None
    if not isinstance(gate, dict):
        raise ValueError('a request is {"gate": {"kind": …, "prompt": …}}')
    kind = gate.get("kind", "question")
    if kind not in GATE_KINDS:
        raise ValueError(f"a gate's kind is one of {', '.join(GATE_KINDS)}")
    prompt = gate.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError("a gate's prompt is a string")
    data: dict[str, Any] = {"kind": kind, "prompt": prompt}
    tool = gate.get("tool")
    if tool is not None:
        if not isinstance(tool, str) or not 1 <= len(tool) <= MAX_ID:
            raise ValueError(f"a gate's tool is a name of 1 to {MAX_ID} characters")
        data["tool"] = tool
    sha = gate.get("command_sha256")
    if sha is not None:
        if not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise ValueError("command_sha256 is 64 lowercase hex digits (never the command)")
        data["command_sha256"] = sha
    gate_id = gate.get("gate_id")
    if gate_id is None:
        gate_id = str(uuid.uuid4())
    elif not isinstance(gate_id, str) or not 1 <= len(gate_id) <= MAX_ID:
        raise ValueError(f"a gate_id is 1 to {MAX_ID} characters")
    elif gate_id in used:
        raise ValueError(f"gate_id {gate_id!r} was used already in this run")
    return {"gate_id": gate_id, **data}
