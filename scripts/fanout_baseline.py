#!/usr/bin/env python3
"""The baseline of bench_fanout.py: a bare sse-starlette fan-out server.

`GET /stream` follows every event published after it connected (sse-starlette's
EventSourceResponse as its documentation shows it, with the same ping and send timeout as
runledger's streams); `POST /publish` (a JSON object) hands it to every subscriber's queue;
`POST /done` ends every stream with `event: done`. No database, no auth, no resume: what is
left is the framework's own cost of fanning one event out to N streams.

    python scripts/fanout_baseline.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import orjson
import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

subscribers: set[asyncio.Queue[ServerSentEvent | None]] = set()
published = [0]


async def stream(request: Request) -> Response:
    queue: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue()
    subscribers.add(queue)

    async def frames() -> AsyncIterator[ServerSentEvent]:
        try:
            while (event := await queue.get()) is not None:
                yield event
            yield ServerSentEvent(event="done", data="{}")
        finally:
            subscribers.discard(queue)

    return EventSourceResponse(
        frames(),
        ping=15,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        send_timeout=30,
    )


async def publish(request: Request) -> Response:
    published[0] += 1
    data = orjson.dumps({"data": orjson.loads(await request.body())}).decode()
    event = ServerSentEvent(id=str(published[0]), event="log", data=data)
    for queue in subscribers:
        queue.put_nowait(event)
    return Response(status_code=204)


async def done(request: Request) -> Response:
    for queue in subscribers:
        queue.put_nowait(None)
    return Response(status_code=204)


async def count(request: Request) -> Response:
    return Response(str(len(subscribers)))


app = Starlette(
    routes=[
        Route("/stream", stream),
        Route("/publish", publish, methods=["POST"]),
        Route("/done", done, methods=["POST"]),
        Route("/subscribers", count),
    ]
)

if __name__ == "__main__":
    print(f"ready on {sys.argv[1]}", flush=True)
    # uvicorn's defaults pick uvloop and httptools when installed, as for `runledger serve`.
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
