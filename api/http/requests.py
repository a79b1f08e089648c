"""Request plumbing shared by the routes: bodies, parameters, read-your-writes, idempotency."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from adapters.db import Cursor
from adapters.idempotency import Idempotency
from api.http.errors import JSON, ApiError, domain_error_response, from_validation, invalid
from api.service import positions
from api.service.engine import Appended
from api.threads import in_thread
from domain.errors import DomainError, NotFound
from domain.receipts import CURRENT_RECEIPT, Receipt, ReceiptTakenOver

if TYPE_CHECKING:
    from api.service.bootstrap import Services

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
DIGITS = re.compile(r"[0-9]{1,19}")
# Integers of fewer than 16 digits always fit in ±(2^53 - 1); to look for longer digit runs
# fast (re is ~8x slower here), every digit becomes "0" and everything else a space.
_DIGITS_ONLY = bytes(ord("0") if 48 <= b <= 57 else ord(" ") for b in range(256))
_LONG_RUN = b"0" * 16
SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493), which RFC 8785 hashing needs


def services(request: Request) -> Services:
    """The process's services (set up by the app's lifespan)."""
    return request.app.state.services


async def body_bytes(request: Request) -> bytes:
    """The raw body, refused with 413 past the configured limit (whatever Content-Length says)."""
    cached = getattr(request.state, "raw_body", None)
    if cached is not None:
        return cached
    limit: int = services(request).config.body_limit
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
    # Free-form payloads are stored and hashed (docs/audit.md) as JSON again: their
    # integers must be exact in any JSON reader, as I-JSON (RFC 7493) asks.
    free_form = getattr(model, "free_form", False)
    if (
        free_form
        and _LONG_RUN in raw.translate(_DIGITS_ONLY)
        and not _exact_integers(parsed.model_dump())
    ):
        raise invalid(
            "The body holds an integer beyond ±(2^53 - 1), which JSON does not carry "
            "exactly (RFC 7493); send it as a string."
        )
    return parsed


def _exact_integers(value: Any) -> bool:
    """True when every integer in a JSON value is within ±(2^53 - 1)."""
    if isinstance(value, dict):
        return all(_exact_integers(item) for item in value.values())
    if isinstance(value, list):
        return all(_exact_integers(item) for item in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -SAFE_INTEGER <= value <= SAFE_INTEGER
    return True


def path_id(request: Request, name: str = "run_id") -> UUID:
    """A UUID from the path (400 when it is not one)."""
    try:
        return UUID(request.path_params[name])
    except ValueError:
        raise invalid(f"{name} is not a UUID.", name) from None


def uuid_param(request: Request, name: str) -> str | None:
    """A UUID query parameter in its canonical form, or None when absent (400 when it is
    not a UUID)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return str(UUID(raw))
    except ValueError:
        raise invalid(f"{name} is not a UUID.", name) from None


MAX_INT = 2**63 - 1


def int_param(
    request: Request, name: str, default: int | None, low: int, high: int = MAX_INT
) -> int | None:
    """An integer query parameter within [low, high], given at most once (400 otherwise).

    Plain ASCII digits only: Python's int() would also take `+5`, ` 5`, `1_000` and
    other scripts' digits, which no other reader of the same URL would.
    """
    given = request.query_params.getlist(name)
    if not given:
        return default
    if len(given) > 1:  # which one would count? Readers of a URL differ: first, last, all
        raise invalid(f"{name} must be given once.", name)
    raw = given[0]
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
    wanted: int | None = int_param(request, "min_position", None, 0)
    header = request.headers.get("x-min-position")
    if wanted is None and header is not None:
        if not DIGITS.fullmatch(header.strip()) or int(header) > MAX_INT:
            raise invalid("X-Min-Position must be a non-negative integer.", "X-Min-Position")
        wanted = int(header)
    if wanted is None:
        return await in_thread(services(request).read_models_position)
    return await wait_for_read_models(request, wanted)


async def asked_position(request: Request) -> int | None:
    """read_position when the caller named a min_position (query or header), else None: the
    read then takes the current position in its own trip (read_at)."""
    if "min_position" in request.query_params or "x-min-position" in request.headers:
        return await read_position(request)
    return None


async def wait_for_read_models(request: Request, wanted: int) -> int:
    """The read models' position once it is at least `wanted` (503 after 5 s)."""
    try:
        return await positions.wait_for_read_models(services(request), wanted)
    except positions.StoreAway:  # the database is away: the read models cannot move now
        raise ApiError(503, "unavailable", "The database is unavailable; retry shortly.") from None
    except positions.NotCaughtUp as exc:
        raise ApiError(503, "not_caught_up", str(exc)) from None


async def read_model_doc(
    request: Request, read: Callable[[Cursor], dict[str, Any] | None], missing: str
) -> Response:
    """One read-model document (404 `missing` without it), once the read models reach the
    caller's min_position, with X-Position."""
    position = await read_position(request)

    def fetch() -> dict[str, Any] | None:
        with services(request).db.reading() as cur:
            return read(cur)

    doc = await in_thread(fetch)
    if doc is None:
        raise NotFound(missing)
    return with_position(doc, position)


async def read_model_json(
    request: Request,
    cached: Callable[[int], bytes | None],
    read: Callable[[Cursor, int], bytes | None],
    missing: str,
) -> Response:
    """read_model_doc for a document kept encoded: `cached(position)` answers from memory
    when it can (no thread, no query), else `read(cur, position)` reads it (read_at)."""
    position = await asked_position(request)
    known = services(request).runtime.known_position()
    if known is not None and (position is None or position <= known):
        body = cached(known)
        if body is not None:
            return encoded_at(body, known)
    reached, body = await read_at(request, position, read)
    if body is None:
        raise NotFound(missing)
    return encoded_at(body, reached)


async def read_at(
    request: Request, position: int | None, read: Callable[[Cursor, int], T]
) -> tuple[int, T]:
    """(the read models' position, `read(cur, position)`) in one trip to the thread pool;
    `position` when the caller waited for one (read_position), else the current one (in
    memory in a process that projects the read models itself)."""

    def fetch() -> tuple[int, T]:
        reached = services(request).read_models_position() if position is None else position
        with services(request).db.reading() as cur:
            return reached, read(cur, reached)

    return await in_thread(fetch)


def encoded_at(body: bytes, position: int) -> Response:
    """JSON already encoded, as a read-model answer carrying X-Position."""
    return Response(body, media_type="application/json", headers={"X-Position": str(position)})


def with_position(body: Any, position: int, status: int = 200) -> Response:
    """A read-model answer carrying X-Position."""
    return JSON(body, status_code=status, headers={"X-Position": str(position)})


# -- idempotency ----------------------------------------------------------------------------


class Built:
    """An answer built from what the command appended and nothing else, once it appended
    (`position` set): it is then made on the event loop, without a trip to the thread pool.
    (Otherwise, as for any other answer, it may read the store: in the thread pool.)"""

    def __init__(self, build: Callable[[Appended], Response]) -> None:
        self.build = build

    def __call__(self, appended: Appended) -> Response:
        return self.build(appended)


async def _answer(answer: Callable[[Appended], Response], appended: Appended) -> Response:
    if isinstance(answer, Built) and appended.position is not None:
        return answer(appended)
    return await in_thread(answer, appended)


async def idempotent(
    request: Request,
    owner: str,
    command: Callable[[], Awaitable[Appended]],
    answer: Callable[[Appended], Response],
) -> Response:
    """Run a POST's command once per (owner, Idempotency-Key) for 24 h; repeats get the
    first answer, built by `answer` from what the command appended.

    The command runs under a receipt: its saves record what they appended in their own
    transactions, so a retry after a crash answers from that and never runs it twice.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return await _answer(answer, await command())
    if not 1 <= len(key) <= 255:
        raise invalid("Idempotency-Key must be 1 to 255 characters.", "Idempotency-Key")
    body = await body_bytes(request)
    fingerprint = hashlib.sha256(
        b"%s %s\n%s" % (request.method.encode(), request.url.path.encode(), body)
    ).hexdigest()
    records: Idempotency = services(request).runtime.idempotency
    found = await in_thread(records.reserve, owner, key, fingerprint)
    if found.mismatch:
        raise invalid("This Idempotency-Key was used for a different request.")
    if found.in_progress:
        raise in_progress("A request with this Idempotency-Key is in progress.")
    if found.answer is not None:
        return _replayed(Response(found.answer[1], found.answer[0], media_type=JSON.media_type))
    if found.result is not None:  # the first attempt died after committing: answer for it
        assert found.taken_from is not None
        result = found.result
        appended = Appended(UUID(result["id"]), result["status"], result["sequence"], None)
        response = await in_thread(answer, appended)
        await _record(records, owner, key, found.taken_from, response)
        return _replayed(response)
    assert found.attempt is not None
    return await _first_attempt(request, records, owner, key, found.attempt, command, answer)


async def _first_attempt(
    request: Request,
    records: Idempotency,
    owner: str,
    key: str,
    attempt: str,
    command: Callable[[], Awaitable[Appended]],
    answer: Callable[[Appended], Response],
) -> Response:
    """Run the command under the attempt's receipt and record its answer (or its failure,
    when it failed after committing something)."""
    receipt = CURRENT_RECEIPT.set(Receipt(owner, key, attempt))
    try:
        response = await _answer(answer, await command())
    except ReceiptTakenOver:
        records.running.discard(attempt)
        raise in_progress("A retry with this Idempotency-Key took this request over.") from None
    except (ApiError, DomainError) as exc:
        failure = exc.response() if isinstance(exc, ApiError) else domain_error_response(exc)
        if not await in_thread(records.release, owner, key, attempt):
            await _record(records, owner, key, attempt, failure)
        raise
    except BaseException:
        records.running.discard(attempt)
        with suppress(Exception):  # the database may be the reason: the row then lapses
            await in_thread(records.release, owner, key, attempt)
        raise
    finally:
        CURRENT_RECEIPT.reset(receipt)
    await _record(records, owner, key, attempt, response)
    return response


async def _record(
    records: Idempotency, owner: str, key: str, attempt: str, response: Response
) -> None:
    await in_thread(records.record, owner, key, attempt, response.status_code, bytes(response.body))


def _replayed(response: Response) -> Response:
    response.headers["Idempotent-Replayed"] = "true"
    return response


def in_progress(detail: str) -> ApiError:
    """409: another attempt of this idempotent request is running."""
    return ApiError(409, "conflict", detail, status="in_progress")
