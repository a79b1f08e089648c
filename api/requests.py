"""Request plumbing shared by the routes: bodies, parameters, read-your-writes, idempotency."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import orjson
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from adapters.db import Cursor, Database
from api.errors import JSON, ApiError, from_validation, invalid
from domain.errors import NotFound

M = TypeVar("M", bound=BaseModel)
IDEMPOTENCY_TTL = 24 * 3600
RESERVATION_TIMEOUT = 60.0  # longer than any request may take
DIGITS = re.compile(r"[0-9]{1,19}")
# Integers of fewer than 19 digits always fit in 64 bits; to look for longer digit runs
# fast (re is ~8x slower here), every digit becomes "0" and everything else a space.
_DIGITS_ONLY = bytes(ord("0") if 48 <= b <= 57 else ord(" ") for b in range(256))
_LONG_RUN = b"0" * 19
READ_WAIT_SECONDS = 5.0


async def body_bytes(request: Request) -> bytes:
    """The raw body, refused with 413 past the configured limit (whatever Content-Length says)."""
    cached = getattr(request.state, "raw_body", None)
    if cached is not None:
        return cached
    limit: int = request.app.state.config.body_limit
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes.")
        chunks.append(chunk)
    request.state.raw_body = b"".join(chunks)
    return request.state.raw_body


async def parse(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The JSON body as a validated model (400 on malformed JSON, wrong types, unknown fields)."""
    raw = await body_bytes(request)
    if optional and not raw.strip():
        raw = b"{}"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid("The body must be a JSON object.")

    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None
    if getattr(model, "free_form", False) and _LONG_RUN in raw.translate(_DIGITS_ONLY):
        try:  # free-form payloads are stored as JSON again: refuse what cannot be
            orjson.dumps(parsed.model_dump())
        except orjson.JSONEncodeError:
            raise invalid("The body holds a number beyond 64 bits.") from None
    return parsed


def path_id(request: Request, name: str = "run_id") -> UUID:
    """A UUID from the path (400 when it is not one)."""
    try:
        return UUID(request.path_params[name])
    except ValueError:
        raise invalid(f"{name} is not a UUID.", name) from None


MAX_INT = 2**63 - 1


def int_param(
    request: Request, name: str, default: int | None, low: int, high: int = MAX_INT
) -> int | None:
    """An integer query parameter within [low, high] (400 otherwise).

    Plain ASCII digits only: Python's int() would also take `+5`, ` 5`, `1_000` and
    other scripts' digits, which no other reader of the same URL would.
    """
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise invalid(f"{name} must be a whole number written in digits 0-9.", name)
    value = int(raw) if len(raw) <= 19 else MAX_INT + 1  # past 19 digits: out of range anyway
    if not low <= value <= high:
        bound = f"between {low} and {high}" if high != MAX_INT else f"at least {low}"
        raise invalid(f"{name} must be {bound}.", name)
    return value


def bool_param(request: Request, name: str, default: bool) -> bool:
    """A boolean query parameter (`true`/`false`)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise invalid(f"{name} must be true or false.", name)


# -- read-your-writes ---------------------------------------------------------------------


async def read_position(request: Request) -> int:
    """Wait (up to 5 s) for the read models to reach ?min_position / X-Min-Position."""
    state = request.app.state
    wanted: int | None = int_param(request, "min_position", None, 0)
    header = request.headers.get("x-min-position")
    if wanted is None and header is not None:
        if not DIGITS.fullmatch(header.strip()) or int(header) > MAX_INT:
            raise invalid("X-Min-Position must be a non-negative integer.", "X-Min-Position")
        wanted = int(header)
    if wanted is None:
        return await run_in_threadpool(state.read_models_position)
    return await wait_for_read_models(request, wanted)


async def wait_for_read_models(request: Request, wanted: int) -> int:
    """The read models' position once it is at least `wanted` (503 after 5 s)."""
    state = request.app.state
    position = await run_in_threadpool(state.read_models_position)
    deadline = time.monotonic() + READ_WAIT_SECONDS
    while position < wanted:
        if time.monotonic() >= deadline:
            raise ApiError(
                503, "not_caught_up", f"The read models reached {position}, not {wanted}, in time."
            )
        await asyncio.sleep(0.005)
        position = await run_in_threadpool(state.read_models_position)
    return position


async def read_model_doc(
    request: Request, read: Callable[[Cursor], dict[str, Any] | None], missing: str
) -> Response:
    """One read-model document (404 `missing` without it), once the read models reach the
    caller's min_position, with X-Position."""
    position = await read_position(request)

    def fetch() -> dict[str, Any] | None:
        with request.app.state.db.reading() as cur:
            return read(cur)

    doc = await run_in_threadpool(fetch)
    if doc is None:
        raise NotFound(missing)
    return with_position(doc, position)


def with_position(body: Any, position: int, status: int = 200) -> Response:
    """A read-model answer carrying X-Position."""
    return JSON(body, status_code=status, headers={"X-Position": str(position)})


# -- idempotency ----------------------------------------------------------------------------


async def idempotent(
    request: Request, owner: str, handle: Callable[[], Awaitable[Response]]
) -> Response:
    """Run a POST once per (owner, Idempotency-Key) for 24 h; repeats get the first answer."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return await handle()
    if not 1 <= len(key) <= 255:
        raise invalid("Idempotency-Key must be 1 to 255 characters.", "Idempotency-Key")
    body = await body_bytes(request)
    fingerprint = hashlib.sha256(
        b"%s %s\n%s" % (request.method.encode(), request.url.path.encode(), body)
    ).hexdigest()
    db: Database = request.app.state.db
    stored = await run_in_threadpool(_reserve, db, owner, key, fingerprint)
    if stored is not None:
        status, content, their_fingerprint = stored
        if their_fingerprint != fingerprint:
            raise invalid("This Idempotency-Key was used for a different request.")
        if status is None:
            raise ApiError(
                409,
                "conflict",
                "A request with this Idempotency-Key is in progress.",
                status="in_progress",
            )
        return Response(
            content,
            status_code=status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        response = await handle()
    except BaseException:
        await run_in_threadpool(_release, db, owner, key)
        raise
    await run_in_threadpool(_record, db, owner, key, response.status_code, bytes(response.body))
    return response


def _reserve(db: Database, owner: str, key: str, fingerprint: str) -> tuple[Any, ...] | None:
    now = time.time()
    with db.transaction() as cur:
        cur.execute(  # expired answers, and reservations whose request died with its process
            "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? "
            "AND (created_at < ? OR (status IS NULL AND created_at < ?))",
            (owner, key, now - IDEMPOTENCY_TTL, now - RESERVATION_TIMEOUT),
        )
        cur.execute(
            "INSERT INTO idempotency_keys (owner, key, fingerprint, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (owner, key) DO NOTHING",
            (owner, key, fingerprint, now),
        )
        if cur.rowcount == 1:
            return None
        return cur.execute(
            "SELECT status, body, fingerprint FROM idempotency_keys WHERE owner = ? AND key = ?",
            (owner, key),
        ).fetchone()


def _release(db: Database, owner: str, key: str) -> None:
    with db.transaction() as cur:
        cur.execute("DELETE FROM idempotency_keys WHERE owner = ? AND key = ?", (owner, key))


def _record(db: Database, owner: str, key: str, status: int, body: bytes) -> None:
    with db.transaction() as cur:
        cur.execute(
            "UPDATE idempotency_keys SET status = ?, body = ? WHERE owner = ? AND key = ?",
            (status, body.decode(), owner, key),
        )
