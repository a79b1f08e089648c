"""The OpenAPI 3.1 document, generated from the routes themselves: every route is an
`Endpoint` that carries its `Doc` (summary, who may call it, its query parameters, its
request body's pydantic model and its answers' models), and `document` reads them, with
the models' JSON Schemas (pydantic's own) as components. No hand-kept copy: a route without
a Doc cannot be built, and tests check that the document lists every route of the app and
that real answers validate against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Mount, Route

from api.http.models import ErrorBody

REF = "#/components/schemas/{model}"
# Media types of answers that are not JSON models.
SSE, NDJSON, DIFF, TEXT, HTML = (
    "text/event-stream",
    "application/x-ndjson",
    "text/x-diff",
    "text/plain",
    "text/html",
)
ERRORS = {
    400: "invalid_request: a malformed body, a bad parameter or id",
    401: "unauthorized: no key or session, or an unknown one",
    403: "forbidden: the wrong role for this endpoint (or a session's write without "
    "X-Requested-With: runledger)",
    404: "not_found: no such resource, or not yours",
    409: "conflict (with the current `status`) or stale_lease",
    413: "payload_too_large",
    429: "too_many_streams: this key holds its limit of open streams",
    503: "not_caught_up or unavailable: retry after Retry-After",
}
# A model (JSON); a media type; None: no body; or a tuple of models and media types, which
# the client chooses between with Accept.
Answer = type[BaseModel] | str | None | tuple[type[BaseModel] | str, ...]
# One event of a stream, as an SSE client parses it (OpenAPI 3.2's itemSchema for SSE).
SSE_EVENT = {
    "type": "object",
    "description": "One event: `id` the run's sequence or the log's position, `event` the "
    "envelope's type (left out with ?named=false), `data` the envelope as JSON (RunEvent or "
    "ProjectEvent); a run's stream ends with `event: done`, `data: {}` (with ?named=false: "
    '`data: {"type":"done"}`).',
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


@dataclass(frozen=True)
class Param:
    """A query parameter (or header) of an operation."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""
    where: Literal["query", "header"] = "query"
    required: bool = False


@dataclass(frozen=True)
class Doc:
    """What the document says of one route."""

    summary: str
    tag: str
    answers: Mapping[int, Answer]
    auth: tuple[str, ...] = ("user",)  # the roles that may call it; () for a public route
    body: type[BaseModel] | None = None
    body_optional: bool = False
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 401, 403, 404)
    description: str = ""
    headers: Mapping[int, Mapping[str, str]] = field(default_factory=dict)  # answer headers
    idempotent: bool = True  # a POST, PUT or PATCH that takes an Idempotency-Key


class Endpoint(Route):
    """A Starlette route for one method, with its Doc."""

    def __init__(self, path: str, endpoint: Callable[..., Any], method: str, doc: Doc) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method, self.doc = method, doc


# -- common parameters ------------------------------------------------------------------------

UUID_SCHEMA = {"type": "string", "format": "uuid"}
MIN_POSITION = Param(
    "min_position",
    {"type": "integer", "minimum": 0},
    "Wait (up to 5 s) until the read models include this position (read your writes); "
    "503 not_caught_up otherwise. Also as the header X-Min-Position.",
)
IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255},
    "Send the same key again to get the first answer again, applied once (24 hours).",
    where="header",
)


def limit(default: int, top: int) -> Param:
    return Param("limit", {"type": "integer", "minimum": 1, "maximum": top, "default": default})


# -- the document ----------------------------------------------------------------------------


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


def endpoints(routes: Iterable[BaseRoute]) -> list[Endpoint]:
    """The documented routes; a plain Route is an error (every route must say what it is).
    Mounts of static files (the pages' assets) are not operations."""
    found = []
    for route in routes:
        if isinstance(route, Mount):
            continue
        if not isinstance(route, Endpoint):
            raise TypeError(f"route {getattr(route, 'path', route)!r} has no Doc")
        found.append(route)
    return found


def document(routes: Iterable[BaseRoute], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes."""
    documented = endpoints(routes)
    models: dict[type[BaseModel], None] = {ErrorBody: None}
    for route in documented:
        if route.doc.body is not None:
            models[route.doc.body] = None
        for answer in route.doc.answers.values():
            for kind in answer if isinstance(answer, tuple) else (answer,):
                if isinstance(kind, type):
                    models[kind] = None
    _, schemas = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in documented:
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "runledger",
            "version": version,
            "description": "An event-sourced orchestration engine for runs of AI coding "
            "agents. Errors are always `{error, detail}` JSON (ErrorBody).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key."},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "runledger_session",
                    "description": "A browser session from POST /api/session; writes by it "
                    "also need the header X-Requested-With: runledger.",
                },
            },
        },
    }


def _operation(route: Endpoint) -> dict[str, Any]:
    doc = route.doc
    operation: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": doc.summary,
        "tags": [doc.tag],
    }
    if doc.description:
        operation["description"] = doc.description
    parameters = [_path_param(name, kind) for name, kind in _path_params(route.path)]
    params = list(doc.params)
    keyed = route.method in ("POST", "PUT", "PATCH") and doc.auth and doc.idempotent
    if keyed and IDEMPOTENCY_KEY not in params:
        params.append(IDEMPOTENCY_KEY)
    parameters += [
        {
            "name": p.name,
            "in": p.where,
            "required": p.required,
            "schema": dict(p.schema),
            **({"description": p.description} if p.description else {}),
            **({"style": "form", "explode": True} if p.schema.get("type") == "array" else {}),
        }
        for p in params
    ]
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = {
            "required": not doc.body_optional,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=doc.body.__name__)}}
            },
        }
    responses: dict[str, Any] = {}
    for status, answer in sorted(doc.answers.items()):
        responses[str(status)] = _response(status, answer, doc.headers.get(status, {}))
    for status in doc.errors:
        if not doc.auth and status in (401, 403):
            continue
        responses.setdefault(str(status), _error(status))
    operation["responses"] = responses
    operation["security"] = (
        []
        if not doc.auth
        else [{"bearer": []}, {"session": []}]
        if "user" in doc.auth
        else [{"bearer": []}]
    )
    return operation


def _response(status: int, answer: Answer, headers: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _describe(status, answer)}
    kinds = answer if isinstance(answer, tuple) else () if answer is None else (answer,)
    content: dict[str, Any] = {}
    for kind in kinds:
        if kind == SSE:
            content[kind] = {"schema": SSE_EVENT}
        elif isinstance(kind, str):
            content[kind] = {"schema": {"type": "string"}}
        else:
            content["application/json"] = {"schema": _ref(kind)}
    if content:
        out["content"] = content
    if headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return out


def _describe(status: int, answer: Answer) -> str:
    if isinstance(answer, tuple):
        return " · ".join(_describe(status, kind) for kind in answer)
    if answer == SSE:
        return (
            "Server-Sent Events: `retry:` once, then frames `id: <n>`, `event: <type>` (left "
            "out with ?named=false), `data: <envelope JSON>`; `: ping` comments; a run's "
            "stream ends with `event: done` / `data: {}` (?named=false: "
            '`data: {"type":"done"}`)'
        )
    if isinstance(answer, type):
        return (answer.__doc__ or answer.__name__).strip().splitlines()[0]
    return {200: "OK", 201: "Created", 202: "Accepted", 204: "No content"}.get(status, "OK")


def _error(status: int) -> dict[str, Any]:
    return {
        "description": ERRORS.get(status, "an error"),
        "content": {"application/json": {"schema": _ref(ErrorBody)}},
    }


def _path_params(path: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2) or "") for m in re.finditer(r"\{(\w+)(?::(\w+))?\}", path)]


def _path_param(name: str, kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = (
        dict(UUID_SCHEMA) if name.endswith("_id") and name != "gate_id" else {"type": "string"}
    )
    if name == "gate_id":
        schema.update(minLength=1, maxLength=200)
    description = "a file's path in the run's branch" if kind == "path" else ""
    param: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        param["description"] = description
    return param


def _operation_id(route: Endpoint) -> str:
    words = re.sub(r"\{[^}]+\}", "", route.path).replace("/api/", "/").strip("/")
    words = re.sub(r"[^a-zA-Z0-9]+", "_", words).strip("_") or "root"
    return f"{route.method.lower()}_{words}" + ("_item" if route.path.endswith("}") else "")


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}
