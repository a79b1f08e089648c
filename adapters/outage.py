"""Database outages: recognise them, fail fast while they last, back off and recover after.

An outage must never hang a request for long nor answer it with a 500. Three parts:
`is_unavailable` tells a database that cannot be reached (refused, dropped, timed out, a
busy SQLite file) from a bug; `guard_pool` makes a pool give up on a connection after its
short timeout, with an error the libraries' retry loops do not retry (no connection means
nothing was sent, so there is nothing to make sure of); and `Backoff` paces a background
loop's retries and logs the first failure and the recovery, not every attempt.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from adapters.store import StoreSettings

log = logging.getLogger("runledger.outage")

RETRY_AFTER_SECONDS = 2  # what a 503 tells clients: about the time a reconnect takes
FAIL_FAST_SECONDS = 0.2  # the wait for a connection while the database refuses them


class DatabaseUnavailable(Exception):
    """No database connection could be had in time: the operation was not attempted."""


def _driver_unavailable(exc: BaseException) -> bool:
    import psycopg

    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True  # refused, dropped, terminated, pool or statement or lock timeout
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    return False


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) says the database cannot be reached right now."""
    from eventsourcing.persistence import InterfaceError, OperationalError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailable) or _driver_unavailable(current):
            return True
        if isinstance(current, OperationalError | InterfaceError) and (
            "locked" in str(current).lower()  # the library's SQLite errors, unchained
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException, public: bool = False) -> str:
    """A short reason for an outage: for a log line, or (`public`) for an answer, which
    names the error's kind but not the driver's message (it names hosts and ports)."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, DatabaseUnavailable):
            return str(current)
        if _driver_unavailable(current):
            if public:
                return type(current).__name__
            first_line = (str(current).strip().splitlines() or [""])[0]
            return f"{type(current).__name__}: {first_line[:200]}"
        current = current.__cause__ or current.__context__
    return type(exc).__name__


def guard_pool(pool: Any, settings: StoreSettings) -> None:
    """Make a psycopg pool fail in seconds while the database is away, and come back at once.

    Waiting for a connection ends after the pool timeout with DatabaseUnavailable; a
    connection attempt ends after the connect timeout; the pool stops retrying a lost
    connection on its own after about a pool timeout, instead of backing off for minutes
    (psycopg_pool doubles its delay from 1 s), so the next request after the database is
    back opens a connection right away.
    """
    from psycopg_pool import PoolTimeout

    pool.timeout = settings.pool_timeout
    pool.reconnect_timeout = max(settings.pool_timeout, 1.0)
    if isinstance(pool.kwargs, dict):
        pool.kwargs["connect_timeout"] = max(2, round(settings.connect_timeout))
    getconn, connect = pool.getconn, pool._connect
    refused = threading.Event()  # the pool's last attempt to connect failed

    def watched_connect(timeout: float | None = None) -> Any:
        # psycopg_pool has no public hook for a failed connect; this one is its only way in.
        try:
            conn = connect(timeout=timeout)
        except BaseException:
            refused.set()
            raise
        refused.clear()
        return conn

    def guarded_getconn(timeout: float | None = None) -> Any:
        waited = settings.pool_timeout if timeout is None else timeout
        if refused.is_set():
            # The database turned the pool away just now: fail fast rather than make every
            # request (and every write queued behind one) wait out the full timeout. The
            # wait still lets a reconnect that succeeds meanwhile hand its connection over.
            waited = min(waited, FAIL_FAST_SECONDS)
        try:
            return getconn(timeout=waited)
        except PoolTimeout as exc:
            raise DatabaseUnavailable(f"no database connection within {waited:g} s") from exc

    pool._connect = watched_connect
    pool.getconn = guarded_getconn
    pool.putconn = _sweeping_putconn(pool, pool.putconn)


def _sweeping_putconn(pool: Any, putconn: Any) -> Any:
    """A putconn that, when a connection comes back broken, has the pool check its idle
    ones (in the background): a database restart or killed backends break them all at
    once, and otherwise each would fail one more request before the pool noticed."""
    sweeping = threading.Lock()

    def sweep() -> None:
        try:
            pool.check()
        except Exception:  # the pool is closing, or the database is away again
            log.debug("pool check failed", exc_info=True)
        finally:
            sweeping.release()

    def sweeping_putconn(conn: Any) -> None:
        broken = conn.broken or conn.closed
        putconn(conn)
        if broken and sweeping.acquire(blocking=False):
            threading.Thread(target=sweep, name="pool-sweep", daemon=True).start()

    return sweeping_putconn


def session_options(settings: StoreSettings) -> str:
    """libpq `options` that bound every statement and every lock wait of a session."""
    statement_ms = int(settings.statement_timeout * 1000)
    lock_ms = int(settings.lock_timeout * 1000)
    return f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms}"


def guard_event_store(recorder: Any, settings: StoreSettings) -> None:
    """Apply the outage settings to the eventsourcing recorder's own pool (PostgreSQL)."""
    datastore = getattr(recorder, "datastore", None)
    pool = getattr(datastore, "pool", None)
    if settings.kind != "postgres" or pool is None:
        return
    guard_pool(pool, settings)
    if isinstance(pool.kwargs, dict):
        # Its insert sets its own lock timeout; this bounds every other statement.
        pool.kwargs["options"] = f"-c statement_timeout={int(settings.statement_timeout * 1000)}"
        pool.drain()  # the connections opened while creating tables get the options too


class Backoff:
    """Paces a background loop's retries: 0.1 s, doubling, at most `cap`; logs only the
    first failure of an outage and the recovery."""

    def __init__(self, name: str, first: float = 0.1, cap: float = 2.0) -> None:
        self.name, self.first, self.cap = name, first, cap
        self.failures = 0
        self._since = 0.0

    @property
    def failing(self) -> bool:
        """True between a failure and the next success."""
        return self.failures > 0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; the seconds to wait before trying again."""
        if self.failures == 0:
            self._since = time.monotonic()
            if is_unavailable(exc):
                log.warning("%s: database unavailable (%s); retrying", self.name, describe(exc))
            else:
                log.error("%s failed; retrying", self.name, exc_info=exc)
        self.failures += 1
        return min(self.cap, self.first * 2 ** (self.failures - 1))

    def succeeded(self) -> None:
        """Record a success (logs the recovery after a failure)."""
        if self.failures:
            took = time.monotonic() - self._since
            log.warning(
                "%s recovered after %.1f s (%d failed attempts)", self.name, took, self.failures
            )
            self.failures = 0
