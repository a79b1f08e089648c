"""The wiring: one process's services (store, engine, read models, change feed, hub),
started and stopped together, handed as one typed object to every interface."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass

from adapters.db import Database, StoredRow
from adapters.feed import ChangeFeed
from adapters.keys import KeyRing, Principal, generated_key, load_keys
from adapters.sessions import Sessions
from api.config import Config
from api.envelopes import Envelope, RunDirectory, wire_type
from api.service.board import BoardAnswers
from api.service.claims import ClaimBoard
from api.service.engine import Engine
from api.service.hub import Hub
from api.service.metrics import Metrics
from api.service.runtime import ReadModelProgress, Runtime
from api.service.usage import PriceTable, load_prices
from domain.topics import CLAIMABLE_TOPICS
from projections.tracking import PositionWatch


def load_keyring(config: Config) -> tuple[KeyRing, str | None]:
    """The configured keys, or the data directory's generated key for `local`."""
    keys = load_keys(config.api_keys, config.keys_file)
    if keys:
        return KeyRing(keys), None
    key, _ = generated_key(config.data_dir)
    return KeyRing({key: Principal("local", "user")}), key


@dataclass(eq=False)
class Services:
    """Everything the use cases need in one process: what the routes and the CLI receive."""

    config: Config
    runtime: Runtime
    keys: KeyRing
    metrics: Metrics
    hub: Hub
    directory: RunDirectory
    feed: ChangeFeed
    projection: ReadModelProgress
    claim_board: ClaimBoard
    watch: PositionWatch
    boards: BoardAnswers
    prices: PriceTable  # the operator's price table (api/service/usage.py)
    sessions: Sessions  # browser sessions (adapters/sessions.py)
    # the collector's thresholds before start, put back at stop (config.gc_threshold)
    interpreter_gc: tuple[int, int, int]

    @property
    def db(self) -> Database:
        """The database seam (read models, positions, stored events)."""
        return self.runtime.db

    @property
    def engine(self) -> Engine:
        """The engine: one method per command."""
        return self.runtime.engine

    def read_models_position(self) -> int:
        """The position every read model has reached (blocking: call off the loop)."""
        return self.runtime.read_models_position()


async def start(config: Config, metrics: Metrics) -> Services:
    """Open the store, lead if the worker lock is free (and catch up), and start the
    background threads; on the running event loop (the hub lives on it)."""
    runtime = Runtime(config)
    keys, _ = load_keyring(config)
    hub = Hub(config.subscriber_buffer)
    hub.loop = asyncio.get_running_loop()
    directory = RunDirectory(runtime.db)
    await asyncio.to_thread(runtime.lead_if_free)  # and catch up, before serving
    # Waiting claims read the runs view: wake them once it holds a new claimable run.
    # The leader knows when it wrote one; other processes see it go by on the change
    # feed and watch the tracking table until the leader has projected it.
    watch = PositionWatch(runtime.read_models_position, hub.notify_threadsafe)

    def wake_claims(rows: list[StoredRow]) -> None:
        if any(row.topic in CLAIMABLE_TOPICS for row in rows):
            hub.notify_threadsafe()

    head = await asyncio.to_thread(runtime.db.head)
    feed = _change_feed(runtime, head, hub, directory, metrics, watch)
    runtime.engine.followers.append(feed.offer)
    services = Services(
        config=config,
        runtime=runtime,
        keys=keys,
        metrics=metrics,
        hub=hub,
        directory=directory,
        feed=feed,
        projection=ReadModelProgress(runtime),
        claim_board=ClaimBoard(),
        watch=watch,
        boards=BoardAnswers(),
        prices=load_prices(config.prices_file),
        sessions=Sessions(runtime.db, keys),
        interpreter_gc=gc.get_threshold(),
    )
    runtime.projection.on_rows.append(wake_claims)
    runtime.start()
    watch.start()
    feed.start()
    # Long-lived start-up objects leave the collector's view: with many open streams,
    # full collections otherwise stall every stream at once.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*config.gc_threshold)
    gc.callbacks.append(metrics.collector)
    return services


def _change_feed(
    runtime: Runtime,
    head: int,
    hub: Hub,
    directory: RunDirectory,
    metrics: Metrics,
    watch: PositionWatch,
) -> ChangeFeed:
    """The process's change feed from `head`: each batch goes to the read models (when
    leading), the claims' watch, the metrics and the hub."""
    projection = runtime.projection

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
        start_after=head,
        settle=runtime.engine.settle,
        others=runtime.engine.commits.others_writing,
    )
    return feed


async def stop(services: Services) -> None:
    """End the streams, stop the threads and close the store."""
    try:
        services.hub.close_all()
        services.feed.stop()
        services.watch.stop()
        services.runtime.stop()
        await asyncio.to_thread(services.runtime.close)
    finally:
        if services.metrics.collector in gc.callbacks:
            gc.callbacks.remove(services.metrics.collector)
        gc.set_threshold(*services.interpreter_gc)
