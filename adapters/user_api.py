"""The user CLI's HTTP client (`runledger runs|tail|gates|board`, api/user_cli.py): JSON
calls with a user key, and a run's stream followed across disconnects. Standard library
only, like the runner's client (adapters/runner_api.py).

Writes carry an Idempotency-Key and are sent again under it when the connection fails or
the server answers 5xx: a command that did land is never applied twice."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any

from adapters.runner_stream import frames

READ_TIMEOUT = 60.0  # the server pings streams every 15 s: a minute of silence is a dead link
TRIES = 4


class ApiError(Exception):
    """The server refused the request (4xx): its status, error code and sentence."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        self.error = str(self.body.get("error", "error"))
        self.detail = str(self.body.get("detail", body))
        super().__init__(f"{status} {self.error}: {self.detail}")


class Unreachable(Exception):
    """The server could not be reached, or failed (5xx), every time it was tried."""


class UserApi:
    """Calls the API as one user."""

    def __init__(self, server: str, key: str, timeout: float = 30.0) -> None:
        url = urllib.parse.urlsplit(server.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {server!r}")
        self.url, self.key, self.timeout = url, key, timeout

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        secure = self.url.scheme == "https"
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        return kind(self.url.hostname or "127.0.0.1", self.url.port, timeout=timeout)

    def _path(self, path: str, params: dict[str, Any] | None = None) -> str:
        query = urllib.parse.urlencode(
            [(k, v) for k, vs in (params or {}).items() for v in _listed(vs) if v is not None],
        )
        return f"{self.url.path}{path}" + (f"?{query}" if query else "")

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, decoded JSON or text or None, headers); ApiError on a 4xx, Unreachable
        when every try failed to connect or got a 5xx."""
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        payload = None
        if method != "GET":
            headers["Idempotency-Key"] = str(uuid.uuid4())  # one for every try of this call
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body or {}).encode()
        last = ""
        for attempt in range(TRIES):
            if attempt:
                time.sleep(min(0.5 * 2**attempt, 4))
            conn = self._connection(self.timeout)
            try:
                conn.request(method, self._path(path, params), body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            finally:
                conn.close()
            decoded = _decode(raw, response.getheader("content-type") or "")
            if response.status >= 500 or _still_running(attempt, response.status, decoded):
                last = f"{response.status} {decoded}"
                continue
            if response.status >= 400:
                raise ApiError(response.status, decoded)
            return response.status, decoded, {k.lower(): v for k, v in response.getheaders()}
        raise Unreachable(f"{self.url.geturl()}: {last}")

    def get(self, path: str, **params: Any) -> Any:
        """GET, the decoded answer."""
        return self.request("GET", path, params=params)[1]

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST JSON, the decoded answer."""
        return self.request("POST", path, body)[1]

    def follow(
        self,
        run_id: str,
        after: int,
        on_retry: Callable[[int, str], None],
        give_up_after: float,
    ) -> Iterator[dict[str, Any]]:
        """Every event of the run with sequence > after, live, across disconnects (resuming
        from the last one received), until the run ends; Unreachable once the server stayed
        out of reach for `give_up_after` seconds."""
        last, backoff, failing_since = after, 0.5, None
        while True:
            try:
                ended = yield from self._stream(run_id, last)
                if ended is not None:
                    return
                reason = "the stream closed"
            except (OSError, http.client.HTTPException, Unreachable) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except _Progress as progress:  # events came before the drop
                last, backoff, failing_since = progress.last, 0.5, None
                reason = progress.reason
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > give_up_after:
                raise Unreachable(f"{self.url.geturl()}: {reason}")
            on_retry(last, reason)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _stream(self, run_id: str, after: int) -> Generator[dict[str, Any], None, bool | None]:
        """One connection's events; True once the run ended (`done`, or 204), None when
        it closed before delivering any (raises _Progress when it closed after some)."""
        conn = self._connection(READ_TIMEOUT)
        last, delivered = after, False
        try:
            conn.request(
                "GET",
                self._path(f"/api/runs/{run_id}/stream"),
                headers={
                    "Authorization": f"Bearer {self.key}",
                    "Accept": "text/event-stream",
                    "Last-Event-ID": str(after),
                },
            )
            response = conn.getresponse()
            if response.status == 204:  # finished, and we have its last event
                return True
            if response.status != 200:
                raw = response.read()
                decoded = _decode(raw, response.getheader("content-type") or "")
                if response.status >= 500 or response.status == 429:  # come back later
                    raise Unreachable(f"{response.status} {decoded}")
                raise ApiError(response.status, decoded)
            try:
                for frame in frames(iter(response.readline, b"")):
                    if frame.event == "done":
                        return True
                    if not frame.data:
                        continue
                    event = json.loads(frame.data)
                    last, delivered = int(event["sequence"]), True
                    yield event
            except (OSError, http.client.HTTPException) as exc:
                if delivered:
                    raise _Progress(last, f"{type(exc).__name__}: {exc}") from None
                raise
            if delivered:
                raise _Progress(last, "the stream closed")
            return None
        finally:
            conn.close()


class _Progress(Exception):
    """A stream dropped after delivering events up to `last`."""

    def __init__(self, last: int, reason: str) -> None:
        super().__init__(reason)
        self.last, self.reason = last, reason


def _still_running(attempt: int, status: int, body: Any) -> bool:
    """A retry that found the first try of this request still running (the server holds
    its Idempotency-Key): wait and ask again, never report it as refused."""
    if attempt == 0 or status != 409 or not isinstance(body, dict):
        return False
    return body.get("status") == "in_progress" and "Idempotency-Key" in str(body.get("detail"))


def quote(part: str) -> str:
    """An id as one path segment (a gate id is any string its runner chose)."""
    return urllib.parse.quote(part, safe="")


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")
