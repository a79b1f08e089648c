"""Telling an unreachable database from a bug, with real errors from real databases; and the
background loops' backoff."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import psycopg
import pytest

from adapters.db import Database
from adapters.outage import Backoff, DatabaseUnavailable, is_unavailable
from adapters.store import StoreSettings
from tests.faults import TcpProxy
from tests.serve import free_port
from tests.support import PG_URL, postgres_available


def test_a_refused_postgresql_connection_is_unavailable() -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(host="127.0.0.1", port=free_port(), user="postgres", connect_timeout=2)
    assert is_unavailable(caught.value)


def test_a_busy_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0.01, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as caught:
        other.execute("INSERT INTO t VALUES (1)")
    holder.rollback()
    assert is_unavailable(caught.value)


def test_a_bad_statement_is_not_unavailable(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("SELECT * FROM no_such_table")
    assert not is_unavailable(caught.value)


def test_a_wrapped_driver_error_is_unavailable() -> None:
    from eventsourcing.persistence import OperationalError

    try:
        try:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        except psycopg.OperationalError as driver:
            raise OperationalError(str(driver)) from driver
    except OperationalError as wrapped:
        assert is_unavailable(wrapped)


@pytest.mark.postgres
def test_a_cut_off_database_fails_a_read_fast_with_database_unavailable() -> None:
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable")
    target = StoreSettings.from_url(PG_URL)
    proxy = TcpProxy(target.pg_host, target.pg_port)
    settings = StoreSettings.from_url(proxy.proxied_url(PG_URL))
    db = Database(settings)
    try:
        with db.reading() as cur:
            cur.execute("SELECT 1")
        proxy.cut()
        for _ in range(3):  # the dropped connection, then the refused reconnects
            with pytest.raises(Exception) as caught:
                db.ping(timeout=0.5)
            assert is_unavailable(caught.value)
        with pytest.raises(DatabaseUnavailable):
            db.ping(timeout=0.5)
    finally:
        db.close()
        proxy.close()


def test_backoff_doubles_from_a_tenth_of_a_second_up_to_two_seconds() -> None:
    backoff = Backoff("loop")
    delays = [backoff.failed(RuntimeError("x")) for _ in range(7)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    backoff.succeeded()
    assert backoff.failed(RuntimeError("x")) == 0.1


def test_backoff_logs_the_first_failure_and_the_recovery_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backoff = Backoff("feed")
    refused = psycopg.OperationalError("connection refused")
    with caplog.at_level(logging.INFO, logger="runledger.outage"):
        for _ in range(5):
            backoff.failed(refused)
        backoff.succeeded()
        backoff.succeeded()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "database unavailable" in messages[0] and "recovered" in messages[1]
