"""Our two event recorders pass the eventsourcing library's own application-recorder
contract suite: the PostgreSQL one with its append function, the SQLite one with receipts."""

from __future__ import annotations

import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.tests.persistence import ApplicationRecorderTestCase

from adapters.pgrecorder import FastPostgresApplicationRecorder
from adapters.sqliterecorder import ReceiptSQLiteApplicationRecorder
from adapters.store import StoreSettings
from tests.support import postgres_schema


class ContractSuite(ApplicationRecorderTestCase[Any]):
    """The library's suite, minus its throughput printouts (figures come from scripts/)."""

    __test__ = False

    def setUp(self) -> None:
        self.stack = ExitStack()
        self.threads = set(threading.enumerate())

    def tearDown(self) -> None:
        # The library's concurrency test stops its reader threads without joining them:
        # closing the datastore under a reader still mid-query crashes sqlite3.
        for thread in set(threading.enumerate()) - self.threads:
            thread.join(timeout=30)
        self.stack.close()

    # Not collected (unittest collects only callables): timing printouts, not contracts.
    test_performance = None  # type: ignore[assignment]
    test_concurrent_throughput = None  # type: ignore[assignment]


@pytest.mark.postgres
class TestPostgresRecorderContract(ContractSuite):
    __test__ = True

    def create_recorder(self) -> FastPostgresApplicationRecorder:
        import psycopg

        settings = StoreSettings.from_url(self.stack.enter_context(postgres_schema()))
        with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{settings.pg_schema}"')
        datastore = PostgresDatastore(
            settings.pg_dbname,
            settings.pg_host,
            settings.pg_port,
            settings.pg_user,
            settings.pg_password,
            schema=settings.pg_schema,
            pool_size=4,
            max_overflow=4,
        )
        self.stack.callback(datastore.close)
        recorder = FastPostgresApplicationRecorder(datastore, events_table_name="stored_events")
        recorder.create_table()
        return recorder


class TestSQLiteRecorderContract(ContractSuite):
    __test__ = True

    def create_recorder(self) -> ReceiptSQLiteApplicationRecorder:
        folder = Path(self.stack.enter_context(tempfile.TemporaryDirectory()))
        datastore = SQLiteDatastore(str(folder / "events.db"))
        self.stack.callback(datastore.close)
        recorder = ReceiptSQLiteApplicationRecorder(datastore)
        recorder.create_table()
        return recorder
