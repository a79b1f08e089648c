"""Locks that live exactly as long as the process holding them: who leads the background
work, and whether the process that reserved something is still alive.

On PostgreSQL a lock is a session advisory lock held on a connection of its own: the server
drops it the moment that connection ends, also when the process is killed. On SQLite it is
`flock` on a file beside the database, which the kernel drops when the process ends. Either
way a lock never outlives its holder, so "is its holder alive?" has a certain answer: try to
take the lock.
"""

from __future__ import annotations

import fcntl
import logging
import secrets
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from adapters.store import StoreSettings

log = logging.getLogger("runledger.locks")
ADVISORY_NAMESPACE = 7342  # the first key of runledger's two-key advisory locks


class ProcessLock:
    """A named lock, taken with try_acquire and kept until release or the process ends.

    `name` is scoped to the database (and on PostgreSQL to the schema), so two runledger
    stores on one server never share a lock.
    """

    def __init__(self, settings: StoreSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self._conn: Any = None  # PostgreSQL: the connection that holds the lock
        self._file: IO[str] | None = None  # SQLite: the open, flocked file
        self._guard = threading.Lock()

    @property
    def held(self) -> bool:
        """True while this object holds the lock (as far as it last knew)."""
        return self._conn is not None or self._file is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True if this object holds it now."""
        with self._guard:
            if self.held:
                return True
            if self.settings.kind == "postgres":
                return self._try_postgres()
            return self._try_file()

    def check(self) -> bool:
        """True if the lock is still held; on PostgreSQL this asks the server (a lost
        connection has lost the lock, and this object then knows it)."""
        with self._guard:
            if self._conn is None:
                return self._file is not None
            try:
                self._conn.execute("SELECT 1")
                return True
            except Exception:
                log.warning("lost the lock %s with its connection", self.name)
                self._close_conn()
                return False

    def release(self) -> None:
        """Let the lock go (closing its connection or file)."""
        with self._guard:
            self._close_conn()
            if self._file is not None:
                self._file.close()  # closing the last descriptor drops the flock
                self._file = None

    def _try_postgres(self) -> bool:
        import psycopg

        conn = psycopg.connect(self.settings.pg_conninfo, autocommit=True, connect_timeout=5)
        try:
            key = advisory_key(self.settings, self.name)
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_NAMESPACE, key)
            ).fetchone()
        except Exception:
            conn.close()
            raise
        if row is None or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def _try_file(self) -> bool:
        path = lock_path(self.settings, self.name)
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def is_held(settings: StoreSettings, name: str) -> bool:
    """True if some live process (this one included) holds the lock `name`."""
    if settings.kind == "postgres":
        import psycopg

        key = advisory_key(settings, name)
        with psycopg.connect(settings.pg_conninfo, connect_timeout=5) as conn:
            # Held for the rest of this transaction only, so nothing is left behind.
            row = conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)", (ADVISORY_NAMESPACE, key)
            ).fetchone()
            return not (row and row[0])
    path = lock_path(settings, name)
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def advisory_key(settings: StoreSettings, name: str) -> int:
    """The lock's second advisory key: a signed 32-bit hash of the schema and the name."""
    digest = zlib.crc32(f"{settings.pg_schema}/{name}".encode())
    return digest - 2**32 if digest >= 2**31 else digest


def lock_path(settings: StoreSettings, name: str) -> Path:
    """The file whose flock is the lock `name`, in a folder beside the SQLite database."""
    assert settings.sqlite_path is not None
    folder = Path(settings.sqlite_path + ".locks")
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return folder / f"{safe}.lock"


class Instance:
    """This process as the others see it: alive exactly while it holds its own lock, named
    by a random token that it writes beside whatever it reserves."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.token = secrets.randbelow(2**62) + 1
        self.lock = ProcessLock(settings, instance_lock_name(self.token))
        if not self.lock.try_acquire():
            raise RuntimeError("Could not take this process's own instance lock.")

    def keep(self) -> None:
        """Take the lock again if it was lost with its connection (a database outage);
        meanwhile the others may take over what this process reserved, which is safe."""
        if not self.lock.check():
            self.lock.try_acquire()

    def close(self) -> None:
        """Let go of the lock (and its file)."""
        self.lock.release()
        if self.settings.kind != "postgres":
            with suppress(OSError):
                lock_path(self.settings, self.lock.name).unlink()


def instance_alive(settings: StoreSettings, token: int) -> bool:
    """True if the process that wrote `token` is still running (on any host, on PostgreSQL)."""
    name = instance_lock_name(token)
    alive = is_held(settings, name)
    if not alive and settings.kind != "postgres":
        with suppress(OSError):  # a dead process's file: nobody will take that name again
            lock_path(settings, name).unlink()
    return alive


def instance_lock_name(token: int) -> str:
    """The lock a process holds for as long as it lives."""
    return f"instance-{token}"


# -- SQLite: this process's writers take turns in Python ----------------------------------

_sqlite_writers: dict[str, threading.RLock] = {}
_sqlite_writers_guard = threading.Lock()


def sqlite_writer(path: str) -> threading.RLock:
    """The lock every writer of this process to the SQLite file at `path` holds while it
    writes (the events' group, the projections, the Merkle log).

    SQLite lets one writer in at a time; the others, left to its busy handler, sleep 1, 2,
    5, 10, 15, 20, 25… ms between tries, so a group of commands waited for a projection's
    commit and then for the handler's next try. Queued here they start the moment the
    previous writer commits. Another process's writers (a CLI) still meet the busy handler.
    """
    lock = _sqlite_writers.get(path)  # as given: resolving it costs a few system calls
    if lock is not None:
        return lock
    key = str(Path(path).resolve())
    with _sqlite_writers_guard:
        lock = _sqlite_writers.get(key)
        if lock is None:
            lock = _sqlite_writers[key] = threading.RLock()
        _sqlite_writers[path] = lock
        return lock


@contextmanager
def sqlite_writing(path: str, timeout: float) -> Iterator[None]:
    """Hold this process's turn to write the SQLite file; "database is locked" (as SQLite
    would say) when it is not free within `timeout` seconds."""
    lock = sqlite_writer(path)
    if not lock.acquire(timeout=timeout):
        raise sqlite3.OperationalError("database is locked")
    try:
        yield
    finally:
        lock.release()
