"""The engine: the one eventsourcing Application, one method per command (load, decide, save).

The commands are in run_commands.py, gate_commands.py and project_commands.py; here are the
reads, the load-decide-save loop and the one save that every command goes through.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from datetime import datetime
from functools import partial
from typing import TypeVar
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError

from adapters.chain import Chain
from adapters.group_commit import Append, GroupCommit
from adapters.store import LeanMapper
from adapters.stored import StoredRow
from api.service.board_commands import BoardEngineCommands
from api.service.gate_commands import GateEngineCommands
from api.service.plan_commands import PlanCommands
from api.service.project_commands import ProjectCommands
from api.service.results import Appended, Lease
from api.service.run_commands import RunCommands
from domain.errors import Conflict, DomainError, NotFound
from domain.projects import Project
from domain.receipts import CURRENT_RECEIPT
from domain.runs import Run
from domain.runs.snapshot import RunSnapshot

log = logging.getLogger("runledger.engine")
SAVE_ATTEMPTS = 20
SNAPSHOT_EVERY = 500  # a run's events between two of its snapshots, at most (about)
# Commands on one run take turns under its stripe's lock. Two runs on one stripe send a
# command on either, while the other's is under way, through the thread pool (several
# times the CPU of one decided on the loop): with 256 stripes, 7 % of 16 clients' commands
# on 16 runs went that way. 16,384 locks take 1.6 MB.
RUN_LOCK_STRIPES = 16_384
A = TypeVar("A", Run, Project)

__all__ = ["Appended", "Engine", "Lease"]


class Engine(
    RunCommands,
    PlanCommands,
    GateEngineCommands,
    BoardEngineCommands,
    ProjectCommands,
    Application[UUID],
):
    """Runs commands against aggregates; the clock and id source are injected."""

    name = "runledger"
    # Runs are snapshotted (the library's snapshot store, RunSnapshot): loading one, at its
    # head or at any earlier version, replays at most SNAPSHOT_EVERY of its events.
    is_snapshotting_enabled = True

    def __init__(
        self,
        env: dict[str, str],
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], UUID],
        lease_seconds: float = 30.0,
        claim_confirm_seconds: float = 10.0,
        retry_backoff: float = 2.0,
    ) -> None:
        super().__init__(env=env)
        self.clock = clock
        self.new_id = new_id
        self.lease_seconds = lease_seconds
        self.claim_confirm_seconds = claim_confirm_seconds
        self.retry_backoff = retry_backoff
        self.followers: list[Callable[[list[StoredRow]], None]] = []
        # Commands on one run take turns in this process (no version-conflict storms);
        # saves of different aggregates that arrive together share one transaction.
        self._run_locks = [threading.Lock() for _ in range(RUN_LOCK_STRIPES)]
        # (The PostgreSQL recorder keeps the writer's connection while groups follow one
        # another, and lets it go when the writer is idle.)
        release = getattr(self.recorder, "release_writer", lambda: None)
        self.commits = GroupCommit(self._write_group, self._committed, idle=release)
        # Stores the snapshots that commands decided on the loop take (see _saved).
        self._snapshotting = ThreadPoolExecutor(1, thread_name_prefix="snapshots")
        # Each stream's hash chain, linked as events are saved (docs/audit.md).
        self.chain = Chain(self.recorder.stored_hash)  # type: ignore[attr-defined]

    # -- reads ----------------------------------------------------------------------------

    def get_run(self, run_id: UUID, user: str | None = None, version: int | None = None) -> Run:
        """The run as it stands (or stood after `version`); NotFound unless visible to user."""
        try:
            run: object = self.repository.get(run_id, version=version)
        except AggregateNotFoundError:
            raise NotFound("No such run.") from None
        if not isinstance(run, Run):
            raise NotFound("No such run.")
        if user is not None:
            # Visibility follows the run's latest state: a deleted run is gone at every version.
            latest = run if version is None else self.get_run(run_id)
            latest.check_visible_to(user)
        return run

    # -- plumbing -------------------------------------------------------------------------

    def _update(
        self, run_id: UUID, user: str | None, decide: Callable[[Run, datetime], None]
    ) -> Appended:
        """Load, decide, save a run, first on the run as this process last saw it."""
        return self._update_run(run_id, user, decide)[1]

    def _update_run(
        self, run_id: UUID, user: str | None, decide: Callable[[Run, datetime], None]
    ) -> tuple[Run, Appended]:
        """_update, and the run as the command left it (the cached copy: not to be changed
        or kept, since a later read may fast-forward it in place)."""
        seen, load = partial(self._cached_run, run_id), partial(self.get_run, run_id, user)
        too_fast = partial(self._too_fast, run_id)
        return self._load_decide_save(run_id, user, seen, load, decide, too_fast)

    def update_again(self, run_id: UUID, decide: Callable[[Run, datetime], None]) -> Appended:
        """_update (no user) after update_soon's save met another process's event: on the
        run read afresh, with one try fewer (update_soon's was the first)."""
        load, too_fast = partial(self.get_run, run_id), partial(self._too_fast, run_id)
        attempts = SAVE_ATTEMPTS - 1
        return self._load_decide_save(run_id, None, _none, load, decide, too_fast, attempts)[1]

    def _too_fast(self, run_id: UUID) -> Conflict:
        status = self.get_run(run_id).status
        return Conflict("The run is changing too fast; try again.", status)

    def _load_decide_save(
        self,
        aggregate_id: UUID,
        user: str | None,
        seen: Callable[[], A | None],
        load: Callable[[], A],
        decide: Callable[[A, datetime], None],
        too_fast: Callable[[], Conflict],
        attempts: int = SAVE_ATTEMPTS,
    ) -> tuple[A, Appended]:
        """Load, decide, save; on a version conflict (another process) reload and decide again.

        Commands on one aggregate take turns in this process. The first decision is taken
        on the aggregate as this process last saw it (`seen`, when it has one) without
        asking the store: if it appends and the save succeeds, it was current (another
        process's event would have taken that sequence number). Any other outcome (a
        refusal, nothing to append, a conflict) is decided again on the aggregate read
        afresh (`load`), and a conflict then waits a little before the next try.
        """
        with self._run_locks[hash(aggregate_id) % RUN_LOCK_STRIPES]:
            aggregate = seen()
            for attempt in range(attempts):
                fresh = aggregate is None
                try:
                    if aggregate is None:
                        aggregate = load()
                    elif user is not None:
                        aggregate.check_visible_to(user)
                    decide(aggregate, self.clock())
                    if aggregate.pending_events or fresh:
                        return aggregate, self._save(aggregate)
                except DomainError:
                    if fresh:
                        raise
                except IntegrityError:
                    if fresh:
                        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                aggregate = None
        raise too_fast()

    def _cached_run(self, run_id: UUID) -> Run | None:
        """A copy of the run as this process last saw it, without reading the store."""
        cache = self.repository.cache
        if cache is None:
            return None
        try:
            run = cache.get(run_id)
        except KeyError:
            return None
        return deepcopy(run) if isinstance(run, Run) else None

    def _save(self, aggregate: Run | Project) -> Appended:
        """Store the aggregate's new events in one transaction and hand them, in commit
        order, to the followers; the library's save() minus what runledger does not use
        (process events), which costs a few objects per event. Under an idempotent
        request's receipt, the same transaction records what was appended. Saves of other
        aggregates that arrive meanwhile share the transaction (adapters/group_commit.py)."""
        status = _status(aggregate)
        events = aggregate.collect_events()
        if not events:
            return Appended(aggregate.id, status, aggregate.version, None)
        positions = self.commits.append(self._append_of(aggregate, events))
        self._saved(aggregate, len(events))
        return Appended(aggregate.id, status, aggregate.version, positions[-1])

    def _append_of(
        self, aggregate: Run | Project, events: Sequence[DomainEventProtocol[UUID]]
    ) -> Append:
        """The aggregate's collected events as one append: encoded, chained, and with the
        idempotent request's result when there is one."""
        mapper = self.mapper
        if isinstance(mapper, LeanMapper):
            stored, states = zip(*map(mapper.to_stored_event_and_state, events), strict=True)
            links = self.chain.link(stored, states)
        else:
            stored = tuple(map(mapper.to_stored_event, events))
            links = self.chain.link(stored)
        receipt = CURRENT_RECEIPT.get()
        result = None
        if receipt is not None:  # recorded with the events, in their transaction
            answer = {"id": str(aggregate.id), "status": _status(aggregate)}
            result = orjson.dumps({**answer, "sequence": aggregate.version}).decode()
        return Append(aggregate.id, stored, links, receipt, result)

    def _saved(self, aggregate: Run | Project, appended: int, on_writer: bool = False) -> None:
        """After a save: a snapshot when the run passed a multiple of SNAPSHOT_EVERY, and
        the saved state kept as the one this process last saw. `on_writer`: called back on
        the group commit's writer, which must not wait for the snapshot's own transaction:
        it is taken there, and stored by the snapshots' thread."""
        every, version = SNAPSHOT_EVERY, aggregate.version
        if isinstance(aggregate, Run) and version // every > (version - appended) // every:
            if on_writer:
                snapshot = self._take_snapshot(aggregate)
                if snapshot is not None:
                    try:
                        self._snapshotting.submit(self._keep_snapshot, snapshot)
                    except RuntimeError:  # closing: the command's answer must not fail
                        self._keep_snapshot(snapshot)
            else:
                self._snapshot(aggregate)
        if self.repository.cache is not None:
            # With fast-forwarding on, the library leaves the cache at the version it last
            # read, so the next command would re-apply this one's events: keep the saved
            # state instead (the next read still fast-forwards past other processes' events).
            self.repository.cache.put(aggregate.id, aggregate)

    def update_soon(
        self,
        run_id: UUID,
        decide: Callable[[Run, datetime], None],
        done: Callable[[Appended | BaseException | None], None],
    ) -> bool:
        """A command on a run decided at once and its save queued without waiting, for the
        event loop, which must never block on the store (api/service/loop_commands.py).

        True: `done` is called later, on a writer's thread, with the command's answer, its
        failure, or None when the save met an event it did not know of (another process's):
        the command is then to be run as usual (`_update`). False, having changed nothing:
        it cannot go this way, and is to be run as usual: the run is not in this process's
        cache, another command on it is under way here, its decision refused or appended
        nothing (either is decided again on the run read afresh), or the chain's last hash
        is not remembered. Under an idempotent request's receipt the save records the
        request's result, as _save does; a snapshot due is taken once the save is written,
        and stored by the snapshots' thread.
        """
        lock = self._run_locks[hash(run_id) % RUN_LOCK_STRIPES]
        if not lock.acquire(blocking=False):
            return False
        queued = False
        try:
            run = self._cached_run(run_id)
            if run is None:
                return False
            try:
                decide(run, self.clock())
            except DomainError:
                return False
            pending = run.pending_events
            if not pending:
                return False
            if not self.chain.knows(run_id, pending[0].originator_version):
                return False
            events = run.collect_events()
            append = self._append_of(run, events)
            status = run.status

            def written() -> None:
                outcome: Appended | BaseException | None
                try:
                    positions = append.answer()
                    self._saved(run, len(events), on_writer=True)
                    outcome = Appended(run.id, status, run.version, positions[-1])
                except IntegrityError:  # another process's event took the sequence
                    outcome = None
                except BaseException as error:
                    outcome = error
                finally:
                    lock.release()
                done(outcome)

            self.commits.submit(append, written)
            queued = True
            return True
        finally:
            if not queued:
                lock.release()

    def _snapshot(self, run: Run) -> None:
        """Keep a snapshot of the run as just saved, if it can be kept: its events are
        committed, and a snapshot is only a shortcut (one lost, to a crash or an outage,
        means a longer replay), so nothing about it may fail the command."""
        snapshot = self._take_snapshot(run)
        if snapshot is not None:
            self._keep_snapshot(snapshot)

    def _take_snapshot(self, run: Run) -> RunSnapshot | None:
        """The run's snapshot, or None (snapshots off, or the state will not go in one)."""
        if self.snapshots is None:
            return None
        try:
            return RunSnapshot.take(run)
        except Exception as error:  # any: see _snapshot
            log.warning("no snapshot of run %s at %d: %s", run.id, run.version, error)
            return None

    def _keep_snapshot(self, snapshot: RunSnapshot) -> None:
        """Store it; another process's snapshot of the same version is the same state."""
        assert self.snapshots is not None
        try:
            self.snapshots.put([snapshot])
        except IntegrityError:
            pass  # another process kept this version's snapshot first
        except Exception as error:  # any: see _snapshot
            run_id, version = snapshot.originator_id, snapshot.originator_version
            log.warning("no snapshot of run %s at %d: %s", run_id, version, error)

    def close(self) -> None:
        """Store the snapshots taken, then close the store."""
        self._snapshotting.shutdown(wait=True)
        super().close()

    def _write_group(self, group: list[Append]) -> None:
        """Store a group of appends in one transaction (the recorder sets their answers)."""
        self.recorder.append_group(group, writer=True)  # type: ignore[attr-defined]

    def _committed(self, group: list[Append]) -> None:
        """Appends just stored, in commit order: the chain's heads move on, and the
        followers get their events, still in commit order."""
        rows: list[StoredRow] = []
        for a in group:
            positions, links = a.answer(), a.hashes
            assert links is not None and len(positions) == len(a.events) == len(links)
            digest = links[-1][1]
            if digest is not None:  # (None: stored unhashed, by scripts/serve_unhashed.py)
                self.chain.stored(a.aggregate_id, a.events[-1].originator_version, digest)
            rows += [
                StoredRow(position, a.aggregate_id, s.originator_version, s.topic, s.state, *link)
                for position, s, link in zip(positions, a.events, links, strict=True)
            ]
        for follower in self.followers:
            follower(rows)

    def settle(self, timeout: float = 0.05) -> bool:
        """Wait (a little) until every save in flight in this process has reached the
        followers; False if one is still going (it may be waiting for a database lock)."""
        return self.commits.settle(timeout)


def _status(aggregate: Run | Project) -> str:
    """What a command's answer says of the aggregate's state."""
    if isinstance(aggregate, Run):
        return aggregate.status
    return "deleted" if aggregate.deleted else "active"


def _none() -> None:
    """No run as this process last saw it: read it afresh."""
    return None
