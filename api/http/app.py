"""create_app: the Starlette application and the runtime behind it (store, engine, threads)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from adapters.db import StoredRow
from adapters.feed import ChangeFeed
from adapters.keys import KeyRing, generated_key, load_keys
from api.config import Config
from api.envelopes import Envelope, RunDirectory, wire_type
from api.http import errors, events, files, ops, projects, runners, runs
from api.http import metrics as metrics_routes
from api.http.metrics import CommandTimer, Metrics
from api.http.streams import Hub
from api.service.runtime import ReadModelProgress, Runtime
from domain.errors import DomainError
from domain.topics import CLAIMABLE_TOPICS
from projections.tracking import PositionWatch

log = logging.getLogger("runledger")


def load_keyring(config: Config) -> tuple[KeyRing, str | None]:
    """The configured keys, or the data directory's generated key for `local`."""
    keys = load_keys(config.api_keys, config.keys_file)
    if keys:
        return KeyRing(keys), None
    key, _ = generated_key(config.data_dir)
    from adapters.keys import Principal

    return KeyRing({key: Principal("local", "user")}), key


def create_app(config: Config) -> Starlette:
    """The whole engine in one ASGI app: API, projections, change feed and SSE hub."""

    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = Runtime(config)
        keys, _ = load_keyring(config)
        hub = Hub(config.subscriber_buffer)
        hub.loop = asyncio.get_running_loop()
        directory = RunDirectory(runtime.db)
        projection = runtime.projection
        await asyncio.to_thread(runtime.lead_if_free)  # and catch up, before serving
        # Waiting claims read the runs view: wake them once it holds a new claimable run.
        # The leader knows when it wrote one; other processes see it go by on the change
        # feed and watch the tracking table until the leader has projected it.
        watch = PositionWatch(runtime.read_models_position, hub.notify_threadsafe)

        def wake_claims(rows: list[StoredRow]) -> None:
            if any(row.topic in CLAIMABLE_TOPICS for row in rows):
                hub.notify_threadsafe()

        def deliver(rows: list[StoredRow]) -> None:
            projection.offer(feed.position, rows)  # (when leading) the feed is not past them
            if not runtime.leading and any(row.topic in CLAIMABLE_TOPICS for row in rows):
                watch.expect(rows[-1].position)
            metrics.count_events([wire_type(r) for r in rows])
            if hub.subscribers:  # a stream that subscribes later replays these from the store
                hub.publish_threadsafe([directory.stamp(Envelope.from_row(r)) for r in rows])

        feed = ChangeFeed(
            runtime.db,
            deliver,
            poll_interval=runtime.poll_interval,
            start_after=await asyncio.to_thread(runtime.db.head),
            settle=runtime.engine.settle,
        )
        runtime.engine.followers.append(feed.offer)
        state = app.state
        state.config, state.runtime, state.keys = config, runtime, keys
        state.metrics = metrics
        state.db, state.engine, state.hub, state.directory = (
            runtime.db,
            runtime.engine,
            hub,
            directory,
        )
        state.read_models_position = runtime.read_models_position
        state.feed, state.projection = feed, ReadModelProgress(runtime)
        projection.on_rows.append(wake_claims)
        runtime.start()
        watch.start()
        feed.start()
        # Long-lived start-up objects leave the collector's view: with many open streams,
        # full collections otherwise stall every stream at once.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            hub.close_all()
            feed.stop()
            watch.stop()
            runtime.stop()
            await asyncio.to_thread(runtime.close)

    # A worker process answers only the operations routes: it is not behind the balancer.
    api_routes = [*projects.routes, *runs.routes, *runners.routes, *events.routes, *files.routes]
    app = Starlette(
        routes=[
            *ops.routes,
            *metrics_routes.routes,
            *(api_routes if config.role != "worker" else []),
        ],
        lifespan=lifespan,
        exception_handlers={
            errors.ApiError: errors.handle_api_error,
            DomainError: errors.handle_domain_error,
            HTTPException: errors.handle_http_error,
            **dict.fromkeys(errors.DATABASE_ERRORS, errors.handle_database_error),
            Exception: errors.handle_internal,
        },
    )
    app.add_middleware(CommandTimer, metrics=metrics)
    return app
