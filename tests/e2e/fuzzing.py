"""A seeded generator of hostile HTTP requests over every route, and a keep-alive sender.

Everything comes from one `random.Random(seed)`, so a failure names the request index and
the request itself, and the same seed replays it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import string
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

KEYS = ["ka", "kb", "kr", "kr2", "nope", "", "ka ", "KA"]
SCHEMES = ["Bearer", "bearer", "Basic", "Token", ""]
METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"]

# (method, path template, query parameters it reads, a valid body to mutate)
ROUTES: list[tuple[str, str, list[str], Any]] = [
    ("GET", "/health", [], None),
    ("GET", "/metrics", [], None),
    ("GET", "/api/server/info", [], None),
    ("GET", "/api/diagnostics", [], None),
    ("POST", "/api/projects", [], {"name": "p", "default_branch": "main"}),
    ("GET", "/api/projects", ["min_position"], None),
    ("GET", "/api/projects/{project}", ["min_position"], None),
    ("PATCH", "/api/projects/{project}", [], {"name": "q", "settings": {"a": 1}}),
    ("DELETE", "/api/projects/{project}", ["confirm"], None),
    ("POST", "/api/projects/{project}/runs", [], {"task": "t", "originating_branch": "main"}),
    ("GET", "/api/projects/{project}/runs", ["limit", "cursor", "status", "min_position"], None),
    ("POST", "/api/runs", [], {"task": "t", "max_attempts": 2, "project_id": "{project}"}),
    (
        "GET",
        "/api/runs",
        ["project_id", "status", "parent_run_id", "limit", "cursor", "archived", "min_position"],
        None,
    ),
    ("GET", "/api/runs/{run}", ["at_sequence", "min_position"], None),
    ("DELETE", "/api/runs/{run}", [], None),
    ("POST", "/api/runs/{run}/pause", [], {}),
    ("POST", "/api/runs/{run}/resume", [], {}),
    ("POST", "/api/runs/{run}/cancel", [], {"reason": "r"}),
    ("POST", "/api/runs/{run}/review", [], {"approved": False, "request_changes": True}),
    ("POST", "/api/runs/{run}/archive", [], {}),
    ("POST", "/api/runs/{run}/retry", [], {}),
    ("GET", "/api/runs/{run}/events", ["after", "limit"], None),
    ("GET", "/api/runs/{run}/stream", ["after"], None),
    ("GET", "/api/events", ["after", "limit", "run_id", "project_id", "type"], None),
    ("GET", "/api/events/stream", ["after", "run_id", "project_id", "type"], None),
    ("GET", "/api/runs/{run}/files", [], None),
    ("GET", "/api/runs/{run}/files/{file}", [], None),
    ("POST", "/api/runs/{run}/gates/{file}", [], {"decision": "answer", "answer": "a"}),
    ("POST", "/api/runs/{run}/auto-approve", [], {"enabled": True}),
    (
        "POST",
        "/api/runs/{run}/steer",
        [],
        {"kind": "redirect", "instruction": "i", "target_child_run_id": "{run}"},
    ),
    ("POST", "/api/runner/claim", [], {"runner_id": "f", "wait_seconds": 0}),
    ("POST", "/api/runner/leases/{lease}/heartbeat", [], {}),
    (
        "POST",
        "/api/runs/{run}/events",
        [],
        {"fencing_token": 1, "events": [{"type": "log", "data": {"line": "x"}}]},
    ),
    (
        "POST",
        "/api/runs/{run}/report",
        [],
        {
            "fencing_token": 1,
            "outcome": "changes",
            "branch": "runledger/x",
            "tree_hash": "abcd",
            "diff_stats": {"files": 1, "added": 1, "removed": 0},
        },
    ),
]

ODD_IDS = [
    "not-a-uuid",
    "..",
    "%2e%2e",
    "..%2f..%2fetc%2fpasswd",
    "%00",
    "%ff%fe",
    "%E2%98%83",
    "x" * 300,
    "00000000-0000-0000-0000-000000000000",
    "{%s}",
    "%s",  # filled with a random uuid, upper-cased or without dashes below
]
FILES = ["app.py", "a.txt", "*", "..%2f..%2fetc%2fpasswd", "%00", "a%09b", "dir/../app.py", "%22q"]
INTS = ["0", "1", "2", "7", "50", "-1", "+5", "%205", "1_000", "%D9%A5", "1e3", "1.5", "", "x"]
HUGE = ["9" * 25, "18446744073709551616", "9223372036854775807", "9223372036854775808"]
VALID = {
    "limit": ["1", "10", "500"],
    "after": ["0", "3", "10"],
    "at_sequence": ["1", "2", "3"],
    "status": ["pending", "in_progress", "cancelled"],
    "archived": ["true", "false"],
    "confirm": ["true"],
    "type": ["run.*", "run.submitted", "log"],
}
WORDS = ["pending", "in_progress", "true", "false", "review.*", "*", "run.submitted", "%00"]


def random_text(rng: random.Random, size: int = 12) -> str:
    """Short text with some unusual characters."""
    alphabet = string.printable + "é☃\u0000\u202e\ud7ff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, size)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, small."""
    kind = rng.randint(0, 9 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**63) - 1, 10**30, 3])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, 1e-308])
    if kind in (4, 5):
        return random_text(rng)
    if kind in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {random_text(rng, 6): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


@dataclass
class Request:
    """One generated request."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @property
    def is_stream(self) -> bool:
        """An SSE path: read a little and hang up, whatever the method."""
        return self.path.split("?", 1)[0].endswith("/stream")

    def describe(self) -> str:
        """The request, printable, to reproduce a failure."""
        body = None if self.body is None else self.body[:300]
        return f"{self.method} {self.path} headers={self.headers} body={body!r}"


@dataclass
class World:
    """Ids the generator draws from: real ones of each kind, and their owners' keys."""

    runs: list[str]
    projects: list[str]
    leases: list[str]


class Generator:
    """Hostile requests over every route, from one seed."""

    def __init__(self, seed: int, world: World) -> None:
        self.rng = random.Random(seed)
        self.world = world
        self.idempotency_keys: list[str] = []

    def _id(self, real: list[str], share: float = 0.6) -> str:
        rng = self.rng
        if real and rng.random() < share:
            return rng.choice(real)
        if rng.random() < 0.3:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        odd = rng.choice(ODD_IDS)
        if "%s" in odd:
            fresh = uuid.UUID(int=rng.getrandbits(128), version=4)
            text = rng.choice([str(fresh).upper(), fresh.hex, str(fresh)])
            odd = odd % quote(text)
        return odd

    def _path(self, method: str, template: str) -> str:
        share = 0.05 if method == "DELETE" else 0.6  # the world's runs should last a while
        return (
            template.replace("{run}", self._id(self.world.runs, share))
            .replace("{project}", self._id(self.world.projects, share))
            .replace("{lease}", self._id(self.world.leases))
            .replace("{file}", self.rng.choice(FILES))
        )

    def _value(self, name: str) -> str:
        rng = self.rng
        if name in ("run_id", "parent_run_id"):
            return quote(self._id(self.world.runs), safe="%")
        if name == "project_id":
            return quote(self._id(self.world.projects), safe="%")
        if name == "min_position":  # a valid one beyond the head would wait 5 s for its 503
            return rng.choice([*(v for v in INTS if v != "50"), HUGE[0], HUGE[1]])
        if rng.random() < 0.5 and name in VALID:
            return rng.choice(VALID[name])
        return rng.choice([*INTS, *HUGE, *WORDS])

    def _query(self, names: list[str]) -> str:
        rng = self.rng
        pairs = []
        for name in names:
            if rng.random() < 0.4:
                pairs.append(f"{name}={self._value(name)}")
        if rng.random() < 0.1:
            pairs.append(f"{quote(random_text(rng, 5))}={quote(random_text(rng, 5))}")
        if rng.random() < 0.05 and names:
            name = rng.choice(names)
            pairs += [f"{name}={self._value(name)}", f"{name}={self._value(name)}"]
        return "?" + "&".join(pairs) if pairs else ""

    def _headers(self, role: str) -> dict[str, str]:
        rng = self.rng
        headers: dict[str, str] = {}
        roll = rng.random()
        if roll < 0.75:  # the route's role, mostly the owner of the world's runs
            key = rng.choice(["ka", "ka", "ka", "kb"] if role == "user" else ["kr", "kr", "kr2"])
            headers["Authorization"] = f"Bearer {key}"
        elif roll < 0.95:
            key = rng.choice(KEYS)
            scheme = "Bearer" if rng.random() < 0.7 else rng.choice(SCHEMES)
            headers["Authorization"] = f"{scheme} {key}".strip()
        if rng.random() < 0.15:
            headers["Idempotency-Key"] = self._idempotency_key()
        if rng.random() < 0.1:
            headers["Last-Event-ID"] = rng.choice([*INTS, *HUGE, "%s"]).replace("%", "")
        if rng.random() < 0.1:
            headers["X-Min-Position"] = rng.choice(["0", "1", "-1", "+1", "x", HUGE[0]])
        if rng.random() < 0.1:
            headers["Accept"] = rng.choice(
                ["application/x-ndjson", "text/event-stream", "*/*", "application/json"]
            )
        if rng.random() < 0.1:
            headers["Content-Type"] = rng.choice(
                [
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "application/json; charset=latin-1",
                ]
            )
        if rng.random() < 0.03:
            headers["X-Requested-With"] = "runledger"
        return headers

    def _idempotency_key(self) -> str:
        rng = self.rng
        if self.idempotency_keys and rng.random() < 0.5:
            return rng.choice(self.idempotency_keys)
        key = rng.choice(
            ["k", "x" * 300, "", random_text(rng, 20).encode("ascii", "ignore").decode()]
        )
        key = "".join(c for c in key if 32 <= ord(c) < 127)
        self.idempotency_keys.append(key)
        return key

    def _body(self, valid: Any) -> bytes | None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.55 and isinstance(valid, dict):
            return json.dumps(self._mutate(valid)).encode()
        if roll < 0.7:
            return json.dumps(random_json(rng)).encode()
        if roll < 0.82:
            return rng.choice(
                [
                    b"",
                    b"{",
                    b'{"task": "\xff"}',
                    b"[" * 200 + b"]" * 200,
                    b'{"task": NaN}',
                    b'{"fencing_token": 1e400}',
                    b"null",
                    b'{"a":1,"a":2}',
                    bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
                ]
            )
        if roll < 0.835:
            return b'{"task": "' + b"x" * (1024 * 1024 + 10) + b'"}'  # over the body limit
        return None

    def _mutate(self, valid: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        body = json.loads(
            json.dumps(valid)
            .replace("{project}", self._id(self.world.projects))
            .replace("{run}", self._id(self.world.runs))
            .replace('"fencing_token": 1', f'"fencing_token": {rng.choice([1, 1, 1, 2, 0, -1])}')
        )
        for _ in range(rng.randint(0, 2)):
            choice = rng.random()
            if choice < 0.3 and body:
                body.pop(rng.choice(list(body)))
            elif choice < 0.7 and body:
                body[rng.choice(list(body))] = random_json(rng)
            elif choice < 0.8:
                body[random_text(rng, 6)] = random_json(rng)
            elif "branch" in body:
                body["branch"] = rng.choice(
                    ["refs/heads/main", "@", "HEAD", "main", "ghost", "-x", "a..b", "runledger/x"]
                )
        if "wait_seconds" in body and not (
            isinstance(body["wait_seconds"], int | float) and body["wait_seconds"] <= 0.1
        ):
            body["wait_seconds"] = rng.choice([0, -1, "x", 31, None])  # never a long wait
        return body

    def next(self) -> Request:
        """The next request."""
        rng = self.rng
        method, template, params, valid = rng.choice(ROUTES)
        if rng.random() < 0.15:
            method = rng.choice(METHODS)
        path = self._path(method, template) + self._query(params)
        body = (
            self._body(valid) if method in ("POST", "PATCH", "PUT") or rng.random() < 0.05 else None
        )
        if body is not None and '"wait_seconds"' in body.decode("utf-8", "replace"):
            body = self._tame_claim(body)
        runner = template.startswith("/api/runner") or template.endswith(("/events", "/report"))
        role = "runner" if runner and method == "POST" else "user"
        return Request(method, path, self._headers(role), body)

    def _tame_claim(self, body: bytes) -> bytes:
        """A claim found in random JSON must not wait long either."""
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if isinstance(data, dict) and isinstance(data.get("wait_seconds"), int | float):
            data["wait_seconds"] = 0
        return json.dumps(data).encode()


class Sender:
    """One keep-alive connection; a stream gets its own, read briefly and closed."""

    def __init__(self, host: str, port: int, timeout: float = 15.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def send(self, request: Request) -> tuple[int, str | None]:
        """(the status, why the keep-alive connection was lost if it was)."""
        if request.is_stream:
            return self._peek(request), None
        try:
            self.conn.request(request.method, request.path, request.body, request.headers)
            response = self.conn.getresponse()
            response.read()
        except (ConnectionError, http.client.HTTPException, TimeoutError) as exc:
            self.conn.close()
            self.conn = self._connect()
            return 0, f"{type(exc).__name__}: {exc}"
        if response.will_close:
            self.conn.close()
            self.conn = self._connect()
            return response.status, f"the server closed the connection after a {response.status}"
        return response.status, None

    def _peek(self, request: Request) -> int:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(request.method, request.path, request.body, request.headers)
            response = conn.getresponse()
            if response.status == 200 and conn.sock is not None:
                conn.sock.settimeout(0.05)  # a live stream: a few frames at most, then hang up
                with contextlib.suppress(TimeoutError):
                    if request.method != "HEAD":
                        response.read1(4096)
            else:
                response.read()
            return response.status
        finally:
            conn.close()

    def close(self) -> None:
        """Hang up."""
        self.conn.close()
