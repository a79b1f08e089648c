"""create_app: the Starlette application and the runtime behind it (store, engine, threads)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from uuid import uuid4

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from adapters import readmodels
from adapters.db import Database, StoredRow
from adapters.feed import ChangeFeed
from adapters.keys import KeyRing, generated_key, load_keys
from adapters.store import StoreSettings
from api import errors, events, ops, runner, runs
from api.config import Config
from api.envelopes import Envelope, RunDirectory
from api.streams import Hub
from domain.engine import Engine
from domain.errors import DomainError
from projections.runner import ProjectionRunner
from projections.runs import RunsProjection

log = logging.getLogger("runledger")


def utc_now() -> datetime:
    """The engine's clock."""
    return datetime.now(UTC)


class Runtime:
    """The store, the engine, the runs projection: everything but HTTP (also used by the CLI)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = StoreSettings.from_url(config.database_url)
        self.db = Database(self.settings)
        readmodels.create_schema(self.db)
        self.engine = Engine(
            self.settings.eventsourcing_env(),
            clock=utc_now,
            new_id=uuid4,
            lease_seconds=config.lease_seconds,
        )
        self.db.attach_event_store(self.engine.recorder.events_table_name)
        default_poll = 0.1 if self.settings.kind == "sqlite" else 1.0
        self.poll_interval = config.poll_interval or default_poll
        self.projection = ProjectionRunner(
            self.db, RunsProjection(self.engine), poll_interval=self.poll_interval
        )

    def close(self) -> None:
        """Release the database connections."""
        self.engine.close()
        self.db.close()


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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = Runtime(config)
        keys, _ = load_keyring(config)
        hub = Hub(config.subscriber_buffer)
        hub.loop = asyncio.get_running_loop()
        directory = RunDirectory(runtime.db)
        projection = runtime.projection
        await asyncio.to_thread(projection.catch_up)

        def deliver(rows: list[StoredRow]) -> None:
            hub.publish_threadsafe([directory.stamp(Envelope.from_row(r)) for r in rows])
            projection.wake()

        feed = ChangeFeed(
            runtime.db,
            deliver,
            poll_interval=runtime.poll_interval,
            start_after=await asyncio.to_thread(runtime.db.head),
        )
        runtime.engine.listeners.append(feed.wake)
        projection.on_advance.append(hub.notify_threadsafe)
        state = app.state
        state.config, state.runtime, state.keys = config, runtime, keys
        state.db, state.engine, state.hub, state.directory = (
            runtime.db,
            runtime.engine,
            hub,
            directory,
        )
        state.read_models_position = lambda: projection.position
        state.feed, state.projection = feed, projection
        projection.start()
        feed.start()
        try:
            yield
        finally:
            hub.close_all()
            feed.stop()
            projection.stop()
            await asyncio.to_thread(runtime.close)

    return Starlette(
        routes=[*ops.routes, *runs.routes, *runner.routes, *events.routes],
        lifespan=lifespan,
        exception_handlers={
            errors.ApiError: errors.handle_api_error,
            DomainError: errors.handle_domain_error,
            HTTPException: errors.handle_http_error,
            Exception: errors.handle_internal,
        },
    )
