"""The PostgreSQL event recorder, with a faster insert.

The library writes a batch as a pipelined transaction (BEGIN, SET LOCAL lock_timeout, LOCK
TABLE, NOTIFY, INSERT of one array of a composite type, COMMIT). psycopg dumps the
composite array in pure Python, and driving the pipeline costs the interpreter about as much
again. Here the same statements live in a server-side function, created beside the table,
that takes the aggregate's id, its first new version and two plain arrays (topics and
states) sent in binary, and answers the first position: a save is one round trip, one
statement and one row, and psycopg dumps two arrays of built-in types (in C) rather than a
composite per event (in Python).

What makes the log safe to tail is kept exactly: the EXCLUSIVE table lock, so positions
follow commit order, one NOTIFY per transaction, and the returned positions. The NOTIFY
also says how far the log now reaches (its payload is the transaction's last position), so
a listener that already has those events need not read the table. A version conflict is
still a unique violation, which the library turns into its IntegrityError.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier, Literal

from adapters.store import events_channel
from domain.receipts import Receipt, ReceiptTakenOver

APPEND_ATTEMPTS = 10  # as the library retries its own insert
TAKEN_OVER = "RL409"  # the SQLSTATE of an append whose idempotency receipt was taken over


class FastPostgresApplicationRecorder(PostgresApplicationRecorder):
    """PostgresApplicationRecorder whose inserts are one call of a table-locking function."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel_name = events_channel(self.datastore.schema, self.events_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        function = Identifier(f"{self.events_table_name}_append")
        # Each event's place in its stream's hash chain (adapters/chain.py), added to a
        # table made before; the append function before the chain goes. Only when missing:
        # ALTER TABLE takes the table's ACCESS EXCLUSIVE lock even when there is nothing to
        # add, and a process starting beside busy writers (a CLI beside a server) would
        # deadlock with their appends (it holds the index's SHARE lock, they ACCESS SHARE).
        self.sql_create_statements.append(
            SQL(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM information_schema.columns "
                "WHERE table_schema = {schema_name} AND table_name = {table_name} "
                "AND column_name = 'hash') THEN "
                "ALTER TABLE {schema}.{table} ADD COLUMN IF NOT EXISTS prev_hash bytea, "
                "ADD COLUMN IF NOT EXISTS hash bytea; END IF; END $$"
            ).format(
                schema=schema,
                table=table,
                schema_name=Literal(self.datastore.schema),
                table_name=Literal(self.events_table_name),
            )
        )
        self.sql_create_statements.append(
            SQL(
                "DROP FUNCTION IF EXISTS {schema}.{function}"
                "(uuid, bigint, text[], bytea[], text, text, text, text)"
            ).format(schema=schema, function=function)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                "id uuid, first_version bigint, topics text[], states bytea[], "
                "prev_hashes bytea[], hashes bytea[], "
                "r_owner text, r_key text, r_attempt text, r_result text, "
                "OUT first_position bigint, OUT aligned boolean) "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "IF EXISTS (SELECT FROM {schema}.{table} "
                "WHERE originator_id = id AND originator_version = first_version) THEN "
                "RAISE unique_violation USING MESSAGE = 'version ' || first_version || "
                "' of ' || id || ' is already stored'; END IF; "
                "IF r_key IS NOT NULL THEN "
                "UPDATE {schema}.idempotency_keys SET result = r_result "
                "WHERE owner = r_owner AND key = r_key AND attempt = r_attempt; "
                "IF NOT FOUND THEN RAISE EXCEPTION 'idempotency key % was taken over', r_key "
                "USING ERRCODE = '{taken_over}'; END IF; END IF; "
                "SET LOCAL lock_timeout = '{lock_timeout}s'; "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "WITH ins AS (INSERT INTO {schema}.{table} "
                "(originator_id, originator_version, topic, state, prev_hash, hash) "
                "SELECT id, first_version + n - 1, topic, state, prev_hash, hash "
                "FROM unnest(topics, states, prev_hashes, hashes) "
                "WITH ORDINALITY AS e(topic, state, prev_hash, hash, n) "
                "RETURNING notification_id - originator_version AS offset_) "
                "SELECT min(offset_) + first_version, min(offset_) = max(offset_) "
                "INTO first_position, aligned FROM ins; "
                "PERFORM pg_notify({channel}, lastval()::text); "
                "END $$"
            ).format(
                schema=schema,
                function=function,
                table=table,
                lock_timeout=self.datastore.lock_timeout,
                channel=Literal(self.channel_name),
                taken_over=SQL(TAKEN_OVER),
            )
        )
        self.append_statement = SQL(
            "SELECT first_position, aligned "
            "FROM {schema}.{function}(%b, %b, %b, %b, %b, %b, %b, %b, %b, %b)"
        ).format(schema=schema, function=function)
        self.hash_statement = SQL(
            "SELECT hash FROM {schema}.{table} WHERE originator_id = %s AND originator_version = %s"
        ).format(schema=schema, table=table)
        self.stored_statement = SQL(
            "SELECT notification_id, topic, state FROM {schema}.{table} "
            "WHERE originator_id = %s AND originator_version >= %s "
            "ORDER BY originator_version LIMIT %s"
        ).format(schema=schema, table=table)

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        receipt: Receipt | None = None,
        result: str | None = None,
        hashes: Sequence[tuple[bytes, bytes]] | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Append the events in one transaction (with their chain hashes, and with the
        idempotency receipt's result, if any, see domain/receipts.py); their positions, in
        order.

        When the connection fails mid-call the append may or may not have committed:
        before trying again, look for the events themselves, so that a lost answer never
        appends them twice (nor turns into a conflict with ourselves).
        """
        if not stored_events:
            return []
        first = stored_events[0]
        aggregate, version = first.originator_id, first.originator_version
        if any(
            (e.originator_id is not aggregate and e.originator_id != aggregate)
            or e.originator_version != version + i
            for i, e in enumerate(stored_events)
        ):  # not one aggregate's next events: the library's way
            assert receipt is None, "a receipt goes with one aggregate's events"
            assert hashes is None, "a chain links one aggregate's events"
            return super().insert_events(stored_events, **kwargs)
        for attempt in range(APPEND_ATTEMPTS):
            try:
                if attempt:
                    stored = self._stored_positions(stored_events)
                    if stored is not None:
                        return stored
                return self._append(stored_events, receipt, result, hashes)
            except (InterfaceError, OperationalError):
                if attempt + 1 == APPEND_ATTEMPTS:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def stored_hash(self, aggregate_id: UUID, version: int) -> bytes | None:
        """The stored hash of one event (None if it is not stored, or not hashed)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.hash_statement, (aggregate_id, version), prepare=True)
            row = curs.fetchone()
        return None if row is None or row["hash"] is None else bytes(row["hash"])

    def _append(
        self,
        stored_events: Sequence[StoredEvent],
        receipt: Receipt | None,
        result: str | None,
        hashes: Sequence[tuple[bytes, bytes]] | None,
    ) -> list[int]:
        """One call of the append function.

        Under the table lock one INSERT takes consecutive positions, in version order, so
        the function returns only the first; it says when that did not hold (someone else
        used the sequence), and then the positions are read back.
        """
        first = stored_events[0]
        topics = [e.topic for e in stored_events]
        states = [e.state for e in stored_events]
        owner, key, attempt = (
            (receipt.owner, receipt.key, receipt.attempt) if receipt else (None, None, None)
        )
        links = hashes if hashes is not None else [(None, None)] * len(stored_events)
        prev_hashes = [prev for prev, _ in links]
        digests = [digest for _, digest in links]
        args = (
            first.originator_id,
            first.originator_version,
            topics,
            states,
            prev_hashes,
            digests,
        )
        try:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(
                    self.append_statement, (*args, owner, key, attempt, result), prepare=True
                )
                row = curs.fetchone()
        except PersistenceError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == TAKEN_OVER:
                raise ReceiptTakenOver(str(exc.__cause__)) from None
            raise
        assert row is not None
        if row["aligned"]:
            start = row["first_position"]
            return list(range(start, start + len(stored_events)))
        stored = self._stored_positions(stored_events)
        assert stored is not None, "the events just appended are not in the store"
        return stored

    def _stored_positions(self, stored_events: Sequence[StoredEvent]) -> list[int] | None:
        """The positions of exactly these events if the store holds them, else None."""
        first = stored_events[0]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.stored_statement,
                (first.originator_id, first.originator_version, len(stored_events)),
            )
            rows = curs.fetchall()
        found = [(r["topic"], bytes(r["state"])) for r in rows]
        if found != [(e.topic, bytes(e.state)) for e in stored_events]:
            return None
        return [r["notification_id"] for r in rows]
