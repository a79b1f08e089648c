"""The reference runner's HTTP client: the runner calls over plain HTTP with JSON (standard
library only), retried under one Idempotency-Key until they land."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

log = logging.getLogger("runledger.runner")


class LeaseLost(Exception):
    """The server refused our fencing token: the run was cancelled or given to another."""


class Refused(RuntimeError):
    """The server refused the request itself (a 4xx other than a stale lease): sending it
    again would be refused again."""

    def __init__(self, path: str, status: int, payload: dict[str, Any]) -> None:
        super().__init__(f"{path}: {status} {payload}")
        self.status, self.payload = status, payload

    @property
    def detail(self) -> str:
        """The server's one-sentence reason."""
        return str(self.payload.get("detail") or self.payload)


class Api:
    """The runner calls, over plain HTTP with JSON."""

    def __init__(self, server: str, key: str) -> None:
        self.server = server.rstrip("/")
        self.key = key

    def call(
        self,
        path: str,
        body: dict[str, Any],
        timeout: float = 60,
        key: str | None = None,
        method: str = "POST",
    ) -> tuple[int, Any]:
        """Send JSON; (status, decoded body or None). Raises LeaseLost on 409 stale_lease,
        Refused on another 4xx (but 408 and 429, which a retry may get past)."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        request = urllib.request.Request(
            self.server + path, data=json.dumps(body).encode(), headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}")
            except ValueError:
                payload = {}
            if exc.code == 409 and payload.get("error") == "stale_lease":
                raise LeaseLost(payload.get("detail", "stale lease")) from None
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise Refused(path, exc.code, payload) from None
            raise RuntimeError(f"{path}: {exc.code} {payload}") from None

    def call_reliably(
        self, path: str, body: dict[str, Any], tries: int = 8, method: str = "POST"
    ) -> Any:
        """Send until it lands (network errors, 5xx), under one Idempotency-Key so a retry
        of a request that did land appends nothing twice. LeaseLost and Refused end it."""
        key = str(uuid.uuid4())
        for attempt in range(tries):
            try:
                return self.call(path, body, key=key, method=method)[1]
            except (LeaseLost, Refused):
                raise
            except (OSError, RuntimeError) as exc:
                if attempt == tries - 1:
                    raise
                log.warning("%s failed (%s); retrying", path, exc)
                time.sleep(min(0.5 * 2**attempt, 10))
        return None

    def claim(self, runner_id: str, wait: float) -> dict[str, Any] | None:
        """Long-poll for work."""
        status, body = self.call(
            "/api/runner/claim", {"runner_id": runner_id, "wait_seconds": wait}, wait + 30
        )
        return body if status == 200 else None
