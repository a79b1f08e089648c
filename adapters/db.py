"""One small SQL seam over SQLite and PostgreSQL: connections, transactions, the raw event log.

SQL is written once with `?` placeholders; for PostgreSQL they become `%s`. Read models,
idempotency records and direct reads of the event table all go through here.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from adapters.locks import ADVISORY_NAMESPACE, advisory_key, sqlite_writing
from adapters.outage import guard_pool, session_options
from adapters.store import StoreSettings, events_channel
from adapters.stored import StoredRow

MAX_SEQUENCE = 2**63 - 1  # the largest integer both databases store
IN_LIST = 500  # values per `IN (…)`: under SQLite's oldest limit of 999 parameters

__all__ = [
    "Cursor",
    "Database",
    "NamesEventsTable",
    "StoredRow",
    "in_lists",
    "projecting_lock",
    "startup_lock",
]


def in_lists(values: Sequence[Any]) -> Iterator[tuple[list[Any], str]]:
    """The values in chunks of at most IN_LIST, each with its placeholders (`?, ?, …`)
    for an `IN (…)`: one statement per chunk."""
    items = list(values)
    for start in range(0, len(items), IN_LIST):
        chunk = items[start : start + IN_LIST]
        yield chunk, ", ".join("?" * len(chunk))


@runtime_checkable
class NamesEventsTable(Protocol):
    """A recorder that names the table it writes: both of the store's (adapters/), though
    the library's base class, which the engine's `recorder` is typed as, does not."""

    events_table_name: str


class Cursor:
    """A thin cursor that accepts `?` placeholders on both databases."""

    def __init__(self, raw: Any, postgres: bool) -> None:
        self._raw = raw
        self._postgres = postgres

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL (`?` becomes `%s`), False on SQLite."""
        return self._postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement."""
        if self._postgres:
            sql = sql.replace("?", "%s")
        self._raw.execute(sql, tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement per row of parameters (pipelined on PostgreSQL: one round trip
        for many rows, where execute() takes one each)."""
        if not rows:
            return
        if self._postgres:
            sql = sql.replace("?", "%s")
        self._raw.executemany(sql, [tuple(row) for row in rows])

    def fetchall(self) -> list[tuple[Any, ...]]:
        """All remaining rows as tuples."""
        return [tuple(r) for r in self._raw.fetchall()]

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, or None."""
        row = self._raw.fetchone()
        return None if row is None else tuple(row)

    @property
    def rowcount(self) -> int:
        """Rows changed by the last statement."""
        return int(self._raw.rowcount)


@contextmanager
def startup_lock(settings: StoreSettings) -> Iterator[None]:
    """Held while a process creates schemas and tables, so processes starting together on
    a fresh database take turns (CREATE … IF NOT EXISTS is not safe against itself)."""
    if settings.kind == "postgres":
        import psycopg

        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(7340)")
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(7340)")
        return
    import fcntl

    assert settings.sqlite_path is not None
    lock_path = Path(settings.sqlite_path + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def projecting_lock(settings: StoreSettings) -> tuple[int, int]:
    """The two keys of the read models' write lock (a transaction advisory lock on
    PostgreSQL, scoped to the schema)."""
    return ADVISORY_NAMESPACE, advisory_key(settings, "projecting")


class Database:
    """Connections to the configured database, for everything but the library's own writes."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.postgres = settings.kind == "postgres"
        self._local = threading.local()
        self._pool: Any = None
        if settings.sqlite_path is not None:
            Path(settings.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        if self.postgres:
            from psycopg_pool import ConnectionPool

            self._ensure_schema()
            options = f"-c search_path={settings.pg_schema} {session_options(settings)}"
            self._pool = ConnectionPool(
                settings.pg_conninfo,
                min_size=1,
                max_size=settings.pool_size,
                # Autocommit: a lone read needs no BEGIN/COMMIT round trips; writes open
                # an explicit transaction.
                kwargs={"options": options, "autocommit": True},
                open=True,
            )
            guard_pool(self._pool, settings)
        self.events_table = ""
        self.events_channel = ""

    def attach_event_store(self, table_name: str) -> None:
        """Read events from the table the eventsourcing recorder writes."""
        if self.postgres:
            self.events_table = f'"{self.settings.pg_schema}"."{table_name}"'
            # the recorder's NOTIFY channel
            self.events_channel = events_channel(self.settings.pg_schema, table_name)
        else:
            self.events_table = table_name

    def _ensure_schema(self) -> None:
        import psycopg

        timeout = max(2, round(self.settings.connect_timeout))
        with psycopg.connect(
            self.settings.pg_conninfo, autocommit=True, connect_timeout=timeout
        ) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.settings.pg_schema}"')

    def _sqlite(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            assert self.settings.sqlite_path is not None
            # A busy file waits at most the lock timeout, then answers "database is locked",
            # which the API turns into a 503.
            busy = self.settings.lock_timeout
            conn = sqlite3.connect(
                self.settings.sqlite_path,
                timeout=busy,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            # WAL is a property of the file: switch once, not on every connection.
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A read-write transaction, committed when the block ends without error."""
        if self.postgres:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield Cursor(cur, True)
            return
        conn = self._sqlite()
        assert self.settings.sqlite_path is not None
        with sqlite_writing(self.settings.sqlite_path, self.settings.lock_timeout):
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield Cursor(cur, False)
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()
            finally:
                cur.close()

    @contextmanager
    def projecting(self) -> Iterator[Cursor]:
        """A transaction that writes read models. On PostgreSQL it first takes their write
        lock, which a rebuild's swap takes too: the projector and the swap take turns, and
        the projector never holds a read-model table while it waits (no deadlock). On
        SQLite every write transaction takes turns anyway."""
        with self.transaction() as cur:
            if self.postgres:
                cur.execute("SELECT pg_advisory_xact_lock(?, ?)", projecting_lock(self.settings))
            yield cur

    def has_table(self, name: str) -> bool:
        """True if the table exists (in the schema this process uses)."""
        with self.reading() as cur:
            return name in existing(cur, self.postgres, [name])

    @contextmanager
    def reading(self, binary: bool = False) -> Iterator[Cursor]:
        """A connection for reads (each statement sees the latest commits). `binary`: on
        PostgreSQL, results come in binary form, which costs the server and this process
        about half as much per event row as text (bytea is sent as hex in text form, and
        an event row is mostly bytea: its state and its two hashes)."""
        if self.postgres:
            with self._pool.connection() as conn, conn.cursor(binary=binary) as cur:
                yield Cursor(cur, True)
            return
        conn = self._sqlite()
        cur = conn.cursor()
        cur.execute("BEGIN")
        try:
            yield Cursor(cur, False)
        finally:
            conn.rollback()
            cur.close()

    def ping(self, timeout: float) -> None:
        """One round trip to the database, waiting at most `timeout` for a connection."""
        if self.postgres:
            with self._pool.connection(timeout=timeout) as conn:
                conn.execute("SELECT 1")
            return
        with self.reading() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        """Close every pooled connection."""
        if self._pool is not None:
            self._pool.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- the raw event log ---------------------------------------------------------------

    def id_param(self, run_id: UUID) -> Any:
        """An aggregate id as the events table holds it (a uuid, or hex text on SQLite)."""
        return run_id if self.postgres else run_id.hex

    def _position_column(self) -> str:
        return "notification_id" if self.postgres else "rowid"

    @property
    def position_column(self) -> str:
        """The events table's column that holds the global position."""
        return self._position_column()

    def _rows(self, rows: list[tuple[Any, ...]]) -> list[StoredRow]:
        return [
            StoredRow(
                position=int(r[0]),
                run_id=r[1] if isinstance(r[1], UUID) else UUID(r[1]),
                sequence=int(r[2]),
                topic=r[3],
                state=bytes(r[4]),
                prev_hash=None if r[5] is None else bytes(r[5]),
                hash=None if r[6] is None else bytes(r[6]),
            )
            for r in rows
        ]

    def run_events(self, run_id: UUID, after: int = 0, limit: int = 1000) -> list[StoredRow]:
        """A run's events with sequence > after, in sequence order.

        A stream's sequences have no gaps, so the next `limit` events are those up to
        after + limit: asked that way, a query reads O(limit) rows whatever the plan.
        (PostgreSQL without statistics plans `> after ORDER BY … LIMIT` as a bitmap scan and
        a sort of every later event, so that replaying a run page by page cost the square
        of its length.) Only when that range comes back short (the stream's end, or a gap
        where an event was removed) does an open-ended query look past its last row:
        at the end there is little past it, and a gap costs one wide read."""
        pos = self._position_column()
        select = (
            f"SELECT {pos}, originator_id, originator_version, topic, state, prev_hash, hash "
            f"FROM {self.events_table} WHERE originator_id = ? AND originator_version > ? "
        )
        order = "ORDER BY originator_version LIMIT ?"
        stream = self.id_param(run_id)
        with self.reading(binary=True) as cur:
            upper = min(after + limit, MAX_SEQUENCE)  # a client's `after` may be the largest
            rows = cur.execute(
                f"{select} AND originator_version <= ? {order}", (stream, after, upper, limit)
            ).fetchall()
            if len(rows) < limit:
                # From the last row read, not from after + limit: an event committed
                # between the two queries must not be passed over.
                last = int(rows[-1][2]) if rows else after
                more = cur.execute(f"{select} {order}", (stream, last, limit - len(rows)))
                rows += more.fetchall()
            return self._rows(rows)

    def events_after(self, position: int, limit: int = 500) -> list[StoredRow]:
        """All events with a global position > position, in position (commit) order."""
        pos = self._position_column()
        sql = (
            f"SELECT {pos}, originator_id, originator_version, topic, state, prev_hash, hash "
            f"FROM {self.events_table} WHERE {pos} > ? ORDER BY {pos} LIMIT ?"
        )
        with self.reading(binary=True) as cur:
            return self._rows(cur.execute(sql, (position, limit)).fetchall())

    def position_of(self, run_id: UUID, sequence: int) -> int | None:
        """The global position of one stored event."""
        sql = (
            f"SELECT {self._position_column()} FROM {self.events_table} "
            "WHERE originator_id = ? AND originator_version = ?"
        )
        with self.reading() as cur:
            row = cur.execute(sql, (self.id_param(run_id), sequence)).fetchone()
        return None if row is None else int(row[0])

    def head(self) -> int:
        """The highest position in the store (0 when empty)."""
        sql = f"SELECT MAX({self._position_column()}) FROM {self.events_table}"
        with self.reading() as cur:
            row = cur.execute(sql).fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def existing(cur: Cursor, postgres: bool, names: Sequence[str]) -> set[str]:
    """Which of the named tables and indexes exist (in the schema this process uses)."""
    if postgres:
        rows = cur.execute(
            "SELECT n FROM unnest(?::text[]) AS n WHERE to_regclass(n) IS NOT NULL", (list(names),)
        ).fetchall()
    else:
        marks = ", ".join("?" * len(names))
        rows = cur.execute(
            f"SELECT name FROM sqlite_master WHERE name IN ({marks})", list(names)
        ).fetchall()
    return {str(row[0]) for row in rows}
