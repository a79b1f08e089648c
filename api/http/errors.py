"""The error model: every error is JSON `{error, detail}`, domain errors map here, once."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from adapters.outage import RETRY_AFTER_SECONDS, DatabaseUnavailable, describe, is_unavailable
from domain.errors import Conflict, Invalid, NotFound, StaleLease

log = logging.getLogger("runledger.api")


class JSON(Response):
    """A JSON response rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """An error answer raised from anywhere in a handler."""

    def __init__(self, http_status: int, error: str, detail: str, /, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.extra = http_status, error, detail, extra

    def response(self) -> Response:
        """The error as an HTTP response."""
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        if self.status == 503:  # the clients' cue to come back, not to give up
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        body = {"error": self.error, "detail": self.detail, **self.extra}
        return JSON(body, status_code=self.status, headers=headers)


def invalid(detail: str, field: str | None = None, message: str | None = None) -> ApiError:
    """A 400 invalid_request, optionally naming the field at fault."""
    errors = [{"field": field, "message": message or detail}] if field else []
    return ApiError(400, "invalid_request", detail, errors=errors)


def from_validation(exc: ValidationError) -> ApiError:
    """A pydantic validation failure as a 400 listing each bad field."""
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return ApiError(400, "invalid_request", "The request body is not valid.", errors=errors)


async def handle_api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


def domain_error_response(exc: Exception) -> Response:
    """The answer for a domain error (a 500 for one this mapping does not know)."""
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc)).response()
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc), status=exc.status).response()
    if isinstance(exc, StaleLease):
        return ApiError(409, "stale_lease", str(exc)).response()
    if isinstance(exc, Invalid):
        return invalid(str(exc), exc.field).response()
    log.error("internal error", exc_info=exc)
    return JSON({"error": "internal"}, status_code=500)


async def handle_domain_error(_: Request, exc: Exception) -> Response:
    return domain_error_response(exc)


async def handle_http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}
    error = codes.get(exc.status_code, "error")
    return JSON({"error": error, "detail": str(exc.detail)}, status_code=exc.status_code)


def unavailable(exc: BaseException) -> ApiError:
    """A 503 for a database that cannot be reached right now (a retry will do)."""
    reason = describe(exc, public=True)
    return ApiError(503, "unavailable", f"The database is unavailable ({reason}).")


async def handle_database_error(request: Request, exc: Exception) -> Response:
    """A database that is away is a 503 with Retry-After; any other database error a 500."""
    if is_unavailable(exc):
        return unavailable(exc).response()
    return await handle_internal(request, exc)


# Database errors handled before the catch-all, so an outage is neither a 500 nor a
# traceback per request in the log.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DatabaseUnavailable,
    psycopg.Error,
    sqlite3.Error,
    PersistenceError,
)


async def handle_internal(request: Request, exc: Exception) -> Response:
    if is_unavailable(exc):
        return unavailable(exc).response()
    log.error("internal error", exc_info=exc)
    return JSON({"error": "internal"}, status_code=500)


async def ending_on_outage(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A stream that ends cleanly when the database goes away: once it has started it can
    no longer answer 503, and its client resumes after the last id it received."""
    try:
        async for frame in frames:
            yield frame
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("a stream ended: %s", describe(exc))
    finally:
        close = getattr(frames, "aclose", None)
        if close is not None:  # its own clean-up (unsubscribing) now, not when collected
            await close()
