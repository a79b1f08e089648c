"""The runtime behind the API (and the CLI): store, engine, read models and policies.

The projections and the policies run only while this process leads (api/service/leadership.py);
a process that does not lead reads how far the read models are from their tracking table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from uuid import uuid4

from adapters import merkle_tables, readmodels
from adapters.audit_writer import POLL, SETTLE, SQLITE_SETTLE, LogWriter
from adapters.backfill import backfill, stream_hash
from adapters.chain import Chain
from adapters.checkpoints import Signer, load_or_create
from adapters.db import Database, NamesEventsTable, StoredRow, startup_lock
from adapters.idempotency import Idempotency
from adapters.locks import Instance, ProcessLock, instance_alive
from adapters.loop import Loop
from adapters.outage import guard_event_store
from api.config import Config
from api.service.coordination import Coordination
from api.service.engine import Engine
from api.service.leadership import LOCK_NAME, Leadership
from api.service.pickup import BoardPickup
from api.service.policies import LeaseExpiry, Merger, ProjectCleanup
from domain.topics import WAKING_TOPICS
from projections.board import BoardProjection
from projections.feeding import Projection, ProjectionFeeder
from projections.owners import OwnersProjection
from projections.projects import ProjectsProjection
from projections.rebuilding import rebuild_with_swap
from projections.run_documents import RunDocuments
from projections.runs import LeasesProjection, RunsProjection
from projections.tracking import TrackedPosition
from projections.usage import UsageProjection


def utc_now() -> datetime:
    """The engine's clock."""
    return datetime.now(UTC)


class Runtime:
    """The store, the engine, the runs projection: everything but HTTP (also used by the CLI)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.store_settings()
        with startup_lock(self.settings):
            self.db = Database(self.settings)
            readmodels.create_schema(self.db)
            merkle_tables.create_tables(self.db)  # the audit log: not a read model
            self.engine = Engine(
                self.settings.eventsourcing_env(),
                clock=utc_now,
                new_id=uuid4,
                lease_seconds=config.lease_seconds,
                claim_confirm_seconds=config.claim_confirm_seconds,
                retry_backoff=config.retry_backoff,
            )
        recorder = self.engine.recorder
        assert isinstance(recorder, NamesEventsTable)
        self.db.attach_event_store(recorder.events_table_name)
        guard_event_store(self.engine.recorder, self.settings)
        # Each stream's hash chain: events stored before it get their hashes now, and a
        # save that meets a stream not hashed yet hashes it first (adapters/backfill.py).
        self.engine.chain = Chain(partial(stream_hash, self.db))
        backfill(self.db)
        # The global Merkle log and its signed checkpoints (adapters/audit_writer.py).
        self.signer = self._signer()
        self.audit_log = LogWriter(
            self.db,
            self.signer,
            config.checkpoint_events,
            config.checkpoint_seconds,
            settle=SETTLE if self.db.postgres else SQLITE_SETTLE,
        )
        self.audit_loop: Loop | None = None  # appending while this process leads
        # This process, alive to the others while it holds its instance lock: idempotency
        # reservations name it, so a retry knows at once when their request died with it.
        self.instance = Instance(self.settings)
        self.idempotency = Idempotency(
            self.db, self.instance.token, partial(instance_alive, self.settings)
        )
        self.keeping = Loop("instance", self.instance.keep, 1.0)
        default_poll = 0.1 if self.settings.kind == "sqlite" else 1.0
        self.poll_interval = config.poll_interval or default_poll
        # The runs, projects and board read models, and the lease policy's leases view;
        # the runs' documents also in memory while this process projects them.
        self.run_documents = RunDocuments()
        self.projection = ProjectionFeeder(
            self.db, self.new_projections(documents=self.run_documents), self.poll_interval
        )
        self.projection.on_committed.append(self.run_documents.publish)
        self.tracked = TrackedPosition(self.db, [p.name for p in self.projection.projections])
        self.lease_policy = LeaseExpiry(self.db, self.engine)
        self.merger = Merger(self.db, self.engine)
        self.cleanup = ProjectCleanup(self.db, self.engine)
        self.coordination = Coordination(self.db, self.engine)
        self.pickup = BoardPickup(self.db, self.engine)
        self.policies: list[Loop] = []  # running while this process leads
        self.leadership = (
            None
            if config.role == "api"
            else Leadership(ProcessLock(self.settings, LOCK_NAME), self._promote, self._demote)
        )

    def _signer(self) -> Signer:
        """The checkpoints' key, named as this store's log: `runledger/<server id>`."""
        with self.db.reading() as cur:
            origin = f"runledger/{merkle_tables.server_id(cur)}"
        return load_or_create(self.config.data_dir, self.config.signing_key_file, origin)

    @property
    def leading(self) -> bool:
        """True while this process runs the projections and policies."""
        return self.leadership is not None and self.leadership.leading

    def read_models_position(self) -> int:
        """The position every read model has reached (anywhere: also if another process
        projects them)."""
        if self.leading:
            return self.projection.position
        return self.tracked.get()

    def known_position(self) -> int | None:
        """The read models' position when this process knows it without asking the
        database (it projects them itself); None otherwise."""
        return self.projection.position if self.leading else None

    def catch_up(self) -> int:
        """Bring every read model up to the head of the log."""
        return self.projection.catch_up()

    def new_projections(
        self, names: Sequence[str] = (), documents: RunDocuments | None = None
    ) -> list[Projection]:
        """Fresh projections (nothing in memory yet): those named, or all of them (the live
        runs projection keeping `documents`)."""
        every: list[Projection] = [
            RunsProjection(self.engine, documents),
            ProjectsProjection(self.engine),
            LeasesProjection(),
            OwnersProjection(),
            BoardProjection(self.engine),
            UsageProjection(),
        ]
        unknown = set(names) - {p.name for p in every}
        if unknown:
            raise ValueError(f"no read model named {', '.join(sorted(unknown))}")
        return [p for p in every if not names or p.name in names]

    def rebuild(self, names: Sequence[str] = ()) -> int:
        """Rebuild the named read models (or all) from the whole log into fresh tables and
        swap them in, also while a server projects and serves the live ones; returns the
        position the rebuilt tables reached."""
        return rebuild_with_swap(self.db, self.new_projections(names))

    def lead_if_free(self) -> bool:
        """Take the worker lock now if it is free, and catch the read models up (at start,
        before serving); True if this process leads."""
        return self.leadership is not None and self.leadership.try_lead()

    def start(self) -> None:
        """Lead or stand by in a background thread (role `api`: neither)."""
        self.keeping.start()
        self.projection.on_rows.append(self._wake_policies)
        self.projection.on_applied.append(self._offer_audit_log)
        if self.leadership is not None:
            self.leadership.start()

    def _promote(self) -> None:
        self.projection.reload()
        self.projection.catch_up()
        readmodels.analyze(self.db)
        self.projection.start()
        self.lease_expiry = Loop("lease-expiry", self.lease_policy.tick, 1.0)
        self.merging = Loop("merger", self.merger.tick, 5.0)
        self.cleaning = Loop("project-cleanup", self.cleanup.tick, 30.0)
        self.coordination.forget()
        self.coordinating = Loop("coordinator", self.coordination.tick, 30.0)
        self.picking = Loop("board-pickup", self.pickup.tick, 30.0)
        self.policies = [
            self.lease_expiry,
            self.merging,
            self.cleaning,
            self.coordinating,
            self.picking,
        ]
        for policy in self.policies:
            policy.start()
        # Woken by the projections (_offer_audit_log): its own polls are a safety net.
        poll = max(self.poll_interval, POLL)
        self.audit_loop = Loop(
            self.audit_log.name, self.audit_log.tick, poll, settle=self.audit_log.settle
        )
        self.audit_loop.start()

    def _demote(self) -> None:
        policies, self.policies = self.policies, []
        for policy in policies:
            policy.stop()
        audit_loop, self.audit_loop = self.audit_loop, None
        if audit_loop is not None:
            audit_loop.stop()
        self.projection.stop()

    def _offer_audit_log(self, after: int, rows: list[StoredRow]) -> None:
        """Hand the log writer the events the projections applied, and wake it."""
        audit_loop = self.audit_loop
        if audit_loop is not None:
            self.audit_log.offer(after, rows)
            if self.audit_log.full:
                audit_loop.hurry()
            else:
                audit_loop.wake()

    def _wake_policies(self, rows: list[StoredRow]) -> None:
        """Wake a policy only for the events it acts on (each also runs on a timer); the
        events name the policies they wake by their loops' names (domain/topics.py)."""
        policies = self.policies
        if not policies:
            return
        self.coordination.note(rows)
        topics = {row.topic for row in rows}
        for policy in policies:
            if not topics.isdisjoint(WAKING_TOPICS.get(policy.name, ())):
                policy.wake()

    def stop(self) -> None:
        """Stop the background threads (and let the worker lock go)."""
        if self.leadership is not None:
            self.leadership.stop()
        self.keeping.stop()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.close()
        self.db.close()
        self.instance.close()


class ReadModelProgress:
    """How far the read models are, as `.position` (what the operations routes read)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def position(self) -> int:
        """The position every read model has reached."""
        return self._runtime.read_models_position()
