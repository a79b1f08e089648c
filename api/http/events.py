"""Event routes: a run's history (JSON, NDJSON, SSE) and the caller's global log (JSON, SSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from adapters.db import Database
from api.envelopes import Envelope
from api.http import auth
from api.http.errors import JSON, ending_on_outage, invalid
from api.http.models.runs import GlobalEvents, RunEvents
from api.http.openapi import SSE, UUID_SCHEMA, Doc, Endpoint, Param, limit
from api.http.requests import DIGITS, MAX_INT, bool_param, int_param, services, uuid_param
from api.http.sse import SseResponse, WriteNow
from api.http.streams import NAMED, UNNAMED, Framing, global_stream, run_stream
from api.service import events as use_cases
from api.threads import in_thread

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_RETRY_AFTER = 5  # seconds: a slot frees as soon as one of the key's streams closes


def _resume_point(request: Request) -> int:
    """Last-Event-ID (which wins) or ?after=, else 0."""
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        if not DIGITS.fullmatch(header.strip()) or int(header) > MAX_INT:
            raise invalid("Last-Event-ID must be a non-negative integer.", "Last-Event-ID")
        return int(header.strip())
    after = int_param(request, "after", 0, 0)
    assert after is not None
    return after


def _sse(request: Request, frames: Callable[[WriteNow], AsyncIterator[bytes]]) -> Response:
    """The stream, if the caller's key has a slot left; else 429 (and no stream starts)."""
    config = services(request).config
    slots = services(request).hub.slots
    key = auth.caller(request).key_hash  # checked already; slots are per key
    if not slots.take(key, config.max_streams_per_key):
        detail = (
            f"This API key already has {config.max_streams_per_key} open streams "
            "(RUNLEDGER_MAX_STREAMS_PER_KEY); close one or retry later."
        )
        headers = {"Retry-After": str(STREAM_RETRY_AFTER)}
        return JSON({"error": "too_many_streams", "detail": detail}, 429, headers=headers)
    return SseResponse(
        lambda write: ending_on_outage(frames(write)),
        SSE_HEADERS,
        config.ping_interval,
        lambda: slots.give_back(key),
        services(request).hub.streams,
    )


async def run_events(request: Request) -> Response:
    owner, run_id = await auth.run_reader(request)
    after = int_param(request, "after", 0, 0)
    limit = int_param(request, "limit", 100, 1, 1000)
    assert after is not None and limit is not None
    found = services(request)
    if "application/x-ndjson" in request.headers.get("accept", ""):
        await in_thread(use_cases.run_state, found, run_id, owner)  # the caller's run?
        return StreamingResponse(
            ending_on_outage(_ndjson(found.db, run_id, after)), media_type="application/x-ndjson"
        )
    return JSON(await in_thread(use_cases.run_history, found, run_id, owner, after, limit))


async def _ndjson(db: Database, run_id: UUID, after: int) -> AsyncIterator[bytes]:
    while True:
        rows = await in_thread(db.run_events, run_id, after, 1000)
        if rows:
            yield b"".join(Envelope.from_row(r).json() + b"\n" for r in rows)
            after = rows[-1].sequence
        if len(rows) < 1000:
            return


def _framing(request: Request) -> Framing:
    """?named=false: frames without `event:` (all reach `onmessage`); named by default."""
    return NAMED if bool_param(request, "named", True) else UNNAMED


async def run_sse(request: Request) -> Response:
    owner, run_id = await auth.run_reader(request)
    after = _resume_point(request)
    framing = _framing(request)
    found = services(request)
    # On the streams' threads: a thousand reconnecting clients read a thousand runs.
    ended, version = await found.hub.off_loop(use_cases.run_state, found, run_id, owner)
    if ended and after >= version:
        # The client has every event of a run that will have no more, and was sent `done`
        # (it follows the last event): 204 is what makes an EventSource stop reconnecting.
        return Response(status_code=204, headers=SSE_HEADERS)
    return _sse(
        request,
        lambda write: run_stream(found.hub, found.db, run_id, after, ended, framing, write),
    )


def _filter(request: Request, owner: str) -> Callable[[Envelope], bool]:
    """The global log's filters: run_id, project_id, type (repeatable, `prefix.*`)."""
    run_id = uuid_param(request, "run_id")
    project_id = uuid_param(request, "project_id")
    exact, prefixes = set(), []
    for t in request.query_params.getlist("type"):
        if not t or len(t) > 200:
            raise invalid("type must be 1 to 200 characters.", "type")
        if t.endswith("*"):
            prefixes.append(t[:-1])
        else:
            exact.add(t)
    prefix_tuple = tuple(prefixes)

    def accepts(env: Envelope) -> bool:
        if env.owner != owner:
            return False
        if run_id is not None and env.run_id != run_id:
            return False
        if project_id is not None and env.project_id != project_id:
            return False
        if exact or prefix_tuple:
            return env.type in exact or env.type.startswith(prefix_tuple)
        return True

    return accepts


async def global_events(request: Request) -> Response:
    owner = auth.user(request)
    after = int_param(request, "after", 0, 0)
    limit = int_param(request, "limit", 100, 1, 1000)
    assert after is not None and limit is not None
    accepts = _filter(request, owner)
    events, last = await in_thread(
        use_cases.scan_global, services(request), owner, after, limit, accepts
    )
    return JSON({"events": events, "last_position": last})


async def global_sse(request: Request) -> Response:
    owner = auth.user(request)
    after = _resume_point(request)
    accepts = _filter(request, owner)
    framing = _framing(request)
    found = services(request)
    return _sse(
        request,
        lambda write: global_stream(
            found.hub, found.db, found.directory, after, accepts, framing, write
        ),
    )


AFTER = Param("after", {"type": "integer", "minimum": 0, "default": 0}, "start after this")
RESUME = (
    Param(
        "after",
        {"type": "integer", "minimum": 0, "default": 0},
        "resume after this id, for clients that cannot send Last-Event-ID (the header wins)",
    ),
    Param("Last-Event-ID", {"type": "string", "pattern": "^[0-9]+$"}, where="header"),
    Param(
        "named",
        {"type": "boolean", "default": True},
        "false: frames without `event:`, so that an EventSource's onmessage gets them all",
    ),
)
FILTERS = (
    Param("run_id", UUID_SCHEMA, "only this run's events"),
    Param("project_id", UUID_SCHEMA, "only this project's events (and its runs')"),
    Param(
        "type",
        {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 200}},
        "only these types (repeatable); a trailing * matches a prefix: review.*",
    ),
)
STREAM_ERRORS = (400, 401, 403, 404, 429)

routes = [
    Endpoint(
        "/api/runs/{run_id}/events",
        run_events,
        "GET",
        Doc(
            "A run's events after a sequence",
            "events",
            {200: RunEvents},
            auth=("user", "runner"),
            params=(AFTER, limit(100, 1000)),
            description="With `Accept: application/x-ndjson`, the whole history after "
            "`after` as one envelope per line.",
        ),
    ),
    Endpoint(
        "/api/runs/{run_id}/stream",
        run_sse,
        "GET",
        Doc(
            "Follow a run's events (SSE), resumable",
            "events",
            {200: SSE, 204: None},
            auth=("user", "runner"),
            params=RESUME,
            errors=STREAM_ERRORS,
            description="204: the run has ended and the client has its last event (it was "
            "sent `done`): a standard client stops reconnecting.",
        ),
    ),
    Endpoint(
        "/api/events",
        global_events,
        "GET",
        Doc(
            "Your events in global order",
            "events",
            {200: GlobalEvents},
            params=(AFTER, limit(100, 1000), *FILTERS),
        ),
    ),
    Endpoint(
        "/api/events/stream",
        global_sse,
        "GET",
        Doc(
            "Follow your events in global order (SSE)",
            "events",
            {200: SSE},
            params=(*RESUME, *FILTERS),
            errors=STREAM_ERRORS,
        ),
    ),
]
