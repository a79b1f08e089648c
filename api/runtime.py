"""The runtime behind the API (and the CLI): store, engine, read models and policies."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from adapters import readmodels
from adapters.db import Database, StoredRow, startup_lock
from adapters.store import StoreSettings
from api.config import Config
from domain.engine import Engine
from domain.projects import Project
from domain.runs import Run
from projections.loop import Loop
from projections.owners import OwnersProjection
from projections.policies import LeaseExpiry, Merger, ProjectCleanup
from projections.projects import ProjectsProjection
from projections.runner import ProjectionRunner
from projections.runs import LeasesProjection, RunsProjection

LEASE_TOPICS = frozenset({Run.Claimed.TOPIC, Run.LeaseRenewed.TOPIC})
CLEANUP_TOPICS = frozenset({Project.Deleted.TOPIC, Run.Submitted.TOPIC})


def utc_now() -> datetime:
    """The engine's clock."""
    return datetime.now(UTC)


class Runtime:
    """The store, the engine, the runs projection: everything but HTTP (also used by the CLI)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = StoreSettings.from_url(config.database_url)
        with startup_lock(self.settings):
            self.db = Database(self.settings)
            readmodels.create_schema(self.db)
            self.engine = Engine(
                self.settings.eventsourcing_env(),
                clock=utc_now,
                new_id=uuid4,
                lease_seconds=config.lease_seconds,
                retry_backoff=config.retry_backoff,
            )
        self.db.attach_event_store(self.engine.recorder.events_table_name)
        default_poll = 0.1 if self.settings.kind == "sqlite" else 1.0
        self.poll_interval = config.poll_interval or default_poll
        # The runs and projects read models, and the lease policy's own leases view.
        self.projection = ProjectionRunner(
            self.db,
            [
                RunsProjection(self.engine),
                ProjectsProjection(self.engine),
                LeasesProjection(),
                OwnersProjection(),
            ],
            poll_interval=self.poll_interval,
        )
        self.lease_expiry = Loop("lease-expiry", LeaseExpiry(self.db, self.engine).tick, 1.0)
        self.merger = Merger(self.db, self.engine)
        self.merging = Loop("merger", self.merger.tick, 5.0)
        self.cleanup = ProjectCleanup(self.db, self.engine)
        self.cleaning = Loop("project-cleanup", self.cleanup.tick, 30.0)
        self.policies = [self.lease_expiry, self.merging, self.cleaning]

    def read_models_position(self) -> int:
        """The position every read model has reached."""
        return self.projection.position

    def catch_up(self) -> int:
        """Bring every read model up to the head of the log."""
        return self.projection.catch_up()

    def rebuild(self) -> int:
        """Rebuild every read model from the whole log."""
        return self.projection.rebuild()

    def start(self) -> None:
        """Follow the log and run the policies in background threads."""
        self.projection.start()
        self.projection.on_rows.append(self._wake_policies)
        for policy in self.policies:
            policy.start()

    def _wake_policies(self, rows: list[StoredRow]) -> None:
        """Wake a policy only for the events it acts on (each also runs on a timer)."""
        topics = {row.topic for row in rows}
        if Run.Approved.TOPIC in topics:
            self.merging.wake()
        if topics & LEASE_TOPICS:
            self.lease_expiry.wake()
        if topics & CLEANUP_TOPICS:
            self.cleaning.wake()

    def stop(self) -> None:
        """Stop the background threads."""
        for policy in self.policies:
            policy.stop()
        self.projection.stop()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.close()
        self.db.close()
