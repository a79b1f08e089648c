"""The error model: every error is JSON `{error, detail}`, domain errors map here, once."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

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


async def handle_internal(_: Request, exc: Exception) -> Response:
    log.error("internal error", exc_info=exc)
    return JSON({"error": "internal"}, status_code=500)
