"""Fresh read-model tables built beside the live ones, then swapped in, in one transaction.

The projections' SQL names its tables (`runs_view` …) unqualified; rather than teaching every
query another name, the rebuild gives the fresh tables the *same* names in a place that a
connection of its own looks in first:

- PostgreSQL: a schema `<schema>_rebuild`, first on that connection's search_path. The swap
  drops each live table and moves the fresh one (its indexes go with it, under the same
  names) into the live schema with `ALTER TABLE … SET SCHEMA`: no copy, however large.
- SQLite: TEMP tables of that connection (SQLite resolves an unqualified name in `temp`
  before `main`); writing them takes no lock on the database file, so the build never
  stops the server's writers. The swap copies each fresh table into the live one
  (DELETE, INSERT … SELECT); SQLite has no way to move a table between schemas.

Beside them a fresh `projection_tracking` holds the rebuild's own positions, so the
projections and their feeder run unchanged. The swap's transaction (on PostgreSQL holding
the read models' write lock, Database.projecting; on SQLite the database's write lock)
applies the last events, swaps the tables and sets the live tracking positions: a reader
sees the old complete tables or the new complete ones, never a half-built one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from adapters.db import Cursor, Database, StoredRow, projecting_lock
from adapters.locks import ProcessLock
from adapters.outage import session_options
from adapters.readmodels.schema import statements_for

LOCK_NAME = "projections-rebuild"

SWAP_WAIT_LOCK_TIMEOUTS = 12  # a swap waits for the read models' write lock this many lock
# timeouts at most (60 s by default)


class RebuildBusy(Exception):
    """Another rebuild of this store is under way."""


class RebuildArea:
    """A connection whose unqualified read-model tables are fresh ones; open with `with`."""

    def __init__(self, db: Database, tables: Sequence[str]) -> None:
        self.db = db
        self.tables = tuple(tables)
        self.shadow = f"{db.settings.pg_schema}_rebuild"  # PostgreSQL only
        self._lock = ProcessLock(db.settings, LOCK_NAME)
        self._conn: Any = None
        self._swapping: Cursor | None = None  # the swap's cursor, while it runs
        self._guard = threading.Lock()  # one statement sequence at a time on the connection

    def __enter__(self) -> RebuildArea:
        if not self._lock.try_acquire():
            raise RebuildBusy("another `runledger projections rebuild` is running")
        try:
            self._open()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._conn is not None:
                if self.db.postgres:
                    self._conn.execute(f'DROP SCHEMA IF EXISTS "{self.shadow}" CASCADE')
                self._conn.close()
                self._conn = None
        finally:
            self._lock.release()

    def _open(self) -> None:
        statements = statements_for(self.tables)
        if self.db.postgres:
            import psycopg

            settings = self.db.settings
            self._conn = psycopg.connect(
                settings.pg_conninfo, autocommit=True, options=session_options(settings)
            )
            # A crashed rebuild's leftovers go first (the rebuild lock says none is running).
            self._conn.execute(f'DROP SCHEMA IF EXISTS "{self.shadow}" CASCADE')
            self._conn.execute(f'CREATE SCHEMA "{self.shadow}"')
            self._conn.execute(f'SET search_path TO "{self.shadow}", "{settings.pg_schema}"')
        else:
            assert self.db.settings.sqlite_path is not None
            busy = self.db.settings.lock_timeout
            self._conn = sqlite3.connect(
                self.db.settings.sqlite_path,
                timeout=busy,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            statements = [_temporary(s) for s in statements]
        with self.projecting() as cur:
            for statement in statements:
                cur.execute(statement)

    # -- what a feeder needs (projections/feeding.py ReadModelStore) ----------------------

    @contextmanager
    def projecting(self) -> Iterator[Cursor]:
        """A transaction on the fresh tables (inside the swap: the swap's own)."""
        if self._swapping is not None:
            yield self._swapping
            return
        # SQLite: a deferred BEGIN, so writing TEMP tables takes no lock on the file.
        with self._guard, self._transaction("BEGIN") as cur:
            yield cur

    @contextmanager
    def reading(self) -> Iterator[Cursor]:
        """Reads of the fresh tables."""
        if self._swapping is not None:
            yield self._swapping
            return
        with self._guard, self._transaction("BEGIN") as cur:
            yield cur

    def events_after(self, position: int, limit: int = 500) -> list[StoredRow]:
        """The log, read from the database as usual."""
        return self.db.events_after(position, limit)

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Cursor]:
        assert self._conn is not None, "open the area with `with` first"
        if self.db.postgres:
            with self._conn.transaction(), self._conn.cursor() as raw:
                yield Cursor(raw, True)
            return
        raw = self._conn.cursor()
        raw.execute(begin)
        try:
            yield Cursor(raw, False)
        except BaseException:
            self._conn.rollback()
            raise
        else:
            self._conn.commit()
        finally:
            raw.close()

    # -- the swap ------------------------------------------------------------------------

    def swap(self, finish: Callable[[], int], names: Sequence[str]) -> int:
        """In one transaction holding the read models' write lock: `finish` brings the
        fresh tables to the head (returning their position), they replace the live ones,
        and the live tracking of the projections `names` moves to that position.

        When it fails (`busy` tells a lock wait that timed out) everything it did is
        rolled back, the fresh tables' last events too: reload the feeder before again."""
        if self.db.postgres:  # fresh tables have no planner statistics yet
            for table in self.tables:
                self._conn.execute(f'ANALYZE "{self.shadow}".{table}')
        with self._guard, self._transaction("BEGIN IMMEDIATE") as cur:
            if self.db.postgres:
                # An operator's rebuild may wait for the live projector's batch longer than
                # a request's statement timeout allows (a busy server's batch can take
                # seconds): this transaction only, and only it waits on this lock.
                wait = f"{int(self.db.settings.lock_timeout * SWAP_WAIT_LOCK_TIMEOUTS * 1000)}ms"
                cur.execute(f"SET LOCAL statement_timeout = '{wait}'")
                cur.execute(f"SET LOCAL lock_timeout = '{wait}'")
                cur.execute("SELECT pg_advisory_xact_lock(?, ?)", projecting_lock(self.db.settings))
            self._swapping = cur
            try:
                position = finish()
            finally:
                self._swapping = None
            live = f'"{self.db.settings.pg_schema}"' if self.db.postgres else "main"
            for table in self.tables:
                if self.db.postgres:
                    cur.execute(f"DROP TABLE IF EXISTS {live}.{table}")
                    cur.execute(f'ALTER TABLE "{self.shadow}".{table} SET SCHEMA {live}')
                else:
                    columns = ", ".join(_columns(cur, table))
                    cur.execute(f"DELETE FROM main.{table}")
                    cur.execute(
                        f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM temp.{table}"
                    )
            for name in names:
                cur.execute(
                    f"INSERT INTO {live}.projection_tracking (name, position) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    (name, position),
                )
        return position

    def busy(self, exc: BaseException) -> bool:
        """True if `exc` is a lock wait that timed out (or a deadlock's victim): worth
        another try, rather than a fault. On PostgreSQL the read models' write lock is an
        advisory lock, whose wait the statement timeout may end before the lock timeout
        does (QueryCanceled)."""
        if self.db.postgres:
            from psycopg import errors

            return isinstance(
                exc, errors.LockNotAvailable | errors.DeadlockDetected | errors.QueryCanceled
            )
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _temporary(statement: str) -> str:
    """A SCHEMA statement for a TEMP table (an index on one goes to `temp` by itself)."""
    return statement.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE IF NOT EXISTS", 1)


def _columns(cur: Cursor, table: str) -> list[str]:
    rows = cur.execute(f"PRAGMA temp.table_info({table})").fetchall()
    return [str(row[1]) for row in rows]
