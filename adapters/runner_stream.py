"""The reference runner follows the run it holds on the run's SSE stream (a runner key may
read the run whose lease it holds), so a cancel, a stop, a gate's resolution or a directive
reaches it at once rather than at the next heartbeat. Standard library only (http.client).

Flows: one thread per session connects to `GET /api/runs/{id}/stream` with `Last-Event-ID`
(the claim's sequence at first, then the last id seen), hands each event to a callback, and
reconnects with backoff when the connection drops; `done`, a `204` (ended, nothing more)
or a `404` (the run is no longer this runner's) ends the lease; `stop()` shuts the socket
down to end a blocked read.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from adapters.runner_api import Api

log = logging.getLogger("runledger.runner")
READ_TIMEOUT = 60.0  # the server pings every 15 s: a minute of silence is a dead connection
MAX_BACKOFF = 5.0


class Frame(NamedTuple):
    """One SSE event: its id (None for `done`), its name, its data."""

    id: str | None
    event: str
    data: str


def frames(lines: Iterable[bytes]) -> Iterator[Frame]:
    """SSE frames from the stream's lines (comments such as `: ping` are skipped)."""
    event_id: str | None = None
    event = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data or event != "message":
                yield Frame(event_id, event, "\n".join(data))
            event_id, event, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)


class RunStream:
    """Follows one run's stream in a thread until stopped or the run is no longer ours."""

    def __init__(
        self,
        api: Api,
        run_id: str,
        after: int,
        heard: Callable[[str, dict[str, Any]], None],
        ended: Callable[[str], None],
    ) -> None:
        self.api, self.run_id, self.last = api, run_id, after
        self.heard, self.ended = heard, ended
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> RunStream:
        """Start following; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following: a blocked read ends at once."""
        self._stopped.set()
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        backoff = 0.5
        while not self._stopped.is_set():
            try:
                wait = self._read()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if self._stopped.is_set():
                    return
                log.info("run %s: stream dropped (%s); reconnecting", self.run_id, exc)
                wait = backoff
            if wait is None:
                return
            if wait == 0:  # it delivered something before it dropped: back to a short wait
                backoff = 0.5
                continue
            self._stopped.wait(wait)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _read(self) -> float | None:
        """One connection: None when following is over, else seconds to wait before the
        next one."""
        url = urllib.parse.urlsplit(self.api.server)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = kind(url.hostname or "127.0.0.1", url.port, timeout=READ_TIMEOUT)
        try:
            conn.request(
                "GET",
                f"{url.path.rstrip('/')}/api/runs/{self.run_id}/stream",
                headers={
                    "Authorization": f"Bearer {self.api.key}",
                    "Accept": "text/event-stream",
                    "Last-Event-ID": str(self.last),
                },
            )
            with self._lock:
                self._sock = conn.sock
            if self._stopped.is_set():
                return None
            response = conn.getresponse()
            if response.status == 404:
                self.ended("the run is no longer this runner's")
                return None
            if response.status == 204:  # the run ended, and its last event was seen
                self.ended("the run has ended")
                return None
            if response.status in (401, 403):
                log.error("run %s: this key may not read the run's stream", self.run_id)
                return None  # the heartbeat still brings the news, later
            if response.status != 200:
                retry = response.getheader("Retry-After") or ""
                return float(retry) if retry.isdigit() else MAX_BACKOFF
            return self._frames(response)
        finally:
            with self._lock:
                self._sock = None
            conn.close()

    def _frames(self, response: http.client.HTTPResponse) -> float | None:
        delivered = False
        for frame in frames(iter(response.readline, b"")):
            if self._stopped.is_set():
                return None
            if frame.event == "done":
                self.ended("the run has ended")
                return None
            if frame.id is not None and frame.id.isdigit():
                self.last = int(frame.id)
            delivered = True
            self.heard(frame.event, json.loads(frame.data) if frame.data else {})
        return 0 if delivered else 0.5
