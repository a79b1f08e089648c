"""The PostgreSQL event recorder, with a faster insert that takes groups of appends.

The library writes a batch as a pipelined transaction (BEGIN, SET LOCAL lock_timeout, LOCK
TABLE, NOTIFY, INSERT of one array of a composite type, COMMIT). psycopg dumps the
composite array in pure Python, and driving the pipeline costs the interpreter about as much
again. Here the same statements live in a server-side function, created beside the table,
that takes a group of appends (adapters/group_commit.py: several aggregates' next events)
as plain arrays sent in binary, and answers each append's first position, or why it was
refused: a group is one round trip, one statement, one commit, and psycopg dumps arrays of
built-in types (in C) rather than a composite per event (in Python).

What makes the log safe to tail is kept exactly: the EXCLUSIVE table lock, so positions
follow commit order, one NOTIFY per transaction, and the returned positions. The NOTIFY
also says how far the log now reaches (its payload is the transaction's last position), so
a listener that already has those events need not read the table. A version conflict is
decided under the lock, per append, before any position is taken: the refused append gets
the library's IntegrityError, and its neighbours are stored.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier, Literal

from adapters.group_commit import Append
from adapters.store import events_channel
from domain.receipts import Receipt, ReceiptTakenOver

APPEND_ATTEMPTS = 10  # as the library retries its own insert


class FastPostgresApplicationRecorder(PostgresApplicationRecorder):
    """PostgresApplicationRecorder whose inserts are one call of a table-locking function."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The group commit's writer's connection, kept from one group to the next
        # (_writer_connection); only ever used in the writer's turn.
        self._kept: AbstractContextManager[Any] | None = None
        self._kept_conn: Any = None
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
        group_function = Identifier(f"{self.events_table_name}_append_group")
        for old in (  # the one-aggregate functions of earlier versions
            "uuid, bigint, text[], bytea[], text, text, text, text",
            "uuid, bigint, text[], bytea[], bytea[], bytea[], text, text, text, text",
        ):
            self.sql_create_statements.append(
                SQL("DROP FUNCTION IF EXISTS {schema}.{function}(" + old + ")").format(
                    schema=schema, function=function
                )
            )
        # A group of appends (adapters/group_commit.py) in one statement: per append, its
        # aggregate, first version and receipt; per event, its append's number (from 1) and
        # version, topic, state and chain hashes, appends one after the other. Under the
        # lock, an append whose first version is already stored is refused ('conflict'), as
        # is one whose receipt was taken over ('taken_over'); the others' events go in with
        # one INSERT, in order. One row per append: its first position, whether its
        # positions are consecutive (else they are read back), and its outcome.
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{group_function}("
                "ids uuid[], first_versions bigint[], "
                "r_owners text[], r_keys text[], r_attempts text[], r_results text[], "
                "e_appends int[], e_versions bigint[], topics text[], states bytea[], "
                "prev_hashes bytea[], hashes bytea[]) "
                "RETURNS TABLE (first_position bigint, aligned boolean, outcome text) "
                "LANGUAGE plpgsql AS $$ "
                "DECLARE n int := coalesce(array_length(ids, 1), 0); "
                "outcomes text[] := array_fill('ok'::text, ARRAY[n]); "
                "BEGIN "
                "SET LOCAL lock_timeout = '{lock_timeout}s'; "
                "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
                "FOR i IN 1..n LOOP "
                "IF EXISTS (SELECT FROM {schema}.{table} WHERE originator_id = ids[i] "
                "AND originator_version = first_versions[i]) THEN outcomes[i] := 'conflict'; "
                "ELSIF r_keys[i] IS NOT NULL THEN "
                "UPDATE {schema}.idempotency_keys SET result = r_results[i] "
                "WHERE owner = r_owners[i] AND key = r_keys[i] AND attempt = r_attempts[i]; "
                "IF NOT FOUND THEN outcomes[i] := 'taken_over'; END IF; END IF; "
                "END LOOP; "
                "RETURN QUERY WITH ins AS (INSERT INTO {schema}.{table} "
                "(originator_id, originator_version, topic, state, prev_hash, hash) "
                "SELECT ids[a], version, topic, state, prev_hash, hash "
                "FROM unnest(e_appends, e_versions, topics, states, prev_hashes, hashes) "
                "WITH ORDINALITY AS e(a, version, topic, state, prev_hash, hash, k) "
                "WHERE outcomes[a] = 'ok' ORDER BY k "
                "RETURNING originator_id AS id, notification_id AS pos), "
                "per AS (SELECT id, min(pos) AS first, max(pos) - min(pos) + 1 = count(*) "
                "AS consecutive FROM ins GROUP BY id) "
                "SELECT per.first, coalesce(per.consecutive, false), outcomes[i] "
                "FROM generate_series(1, n) AS i LEFT JOIN per ON per.id = ids[i] ORDER BY i; "
                "IF 'ok' = ANY(outcomes) THEN PERFORM pg_notify({channel}, lastval()::text); "
                "END IF; END $$"
            ).format(
                schema=schema,
                group_function=group_function,
                table=table,
                lock_timeout=self.datastore.lock_timeout,
                channel=Literal(self.channel_name),
            )
        )
        self.append_statement = SQL(
            "SELECT first_position, aligned, outcome FROM {schema}.{group_function}"
            "(%b::uuid[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], "
            "%b::int[], %b::bigint[], %b::text[], %b::bytea[], %b::bytea[], %b::bytea[])"
        ).format(schema=schema, group_function=group_function)
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
        order. One aggregate's next events are a group of one (append_group)."""
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
        aggregate_id = aggregate if isinstance(aggregate, UUID) else UUID(str(aggregate))
        append = Append(aggregate_id, stored_events, hashes, receipt, result)
        self.append_group([append])
        return append.answer()

    def append_group(self, group: Sequence[Append], writer: bool = False) -> None:
        """Store the appends (each one aggregate's next events, aggregates all different) in
        one transaction; set each one's positions, or its error: IntegrityError when its
        first version is already stored, ReceiptTakenOver when its receipt was taken over.
        `writer`: called by the group commit's writer, in its turn (see _writer_connection).

        When the connection fails mid-call the group may or may not have committed: before
        trying again, look for the events themselves, so that a lost answer never appends
        them twice (nor turns into a conflict with ourselves).
        """
        pending = list(group)
        for attempt in range(APPEND_ATTEMPTS):
            try:
                if attempt:
                    for a in pending:
                        a.positions = self._stored_positions(a.events)
                    pending = [a for a in pending if a.positions is None]
                    if not pending:
                        return
                self._append_group(pending, writer)
                return
            except (InterfaceError, OperationalError):
                if attempt + 1 == APPEND_ATTEMPTS:
                    raise
                time.sleep(0.2)

    def stored_hash(self, aggregate_id: UUID, version: int) -> bytes | None:
        """The stored hash of one event (None if it is not stored, or not hashed)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.hash_statement, (aggregate_id, version), prepare=True)
            row = curs.fetchone()
        return None if row is None or row["hash"] is None else bytes(row["hash"])

    def _append_group(self, group: Sequence[Append], writer: bool = False) -> None:
        """One call of the group function.

        Under the table lock one INSERT takes consecutive positions, in order, so the
        function returns each append's first; it says when that did not hold (someone else
        used the sequence), and then that append's positions are read back.
        """
        e_appends: list[int] = []
        e_versions: list[int] = []
        topics: list[str] = []
        states: list[bytes] = []
        prev_hashes: list[bytes | None] = []
        digests: list[bytes | None] = []
        for number, a in enumerate(group, 1):
            events = a.events
            e_appends += [number] * len(events)
            e_versions += [e.originator_version for e in events]
            topics += [e.topic for e in events]
            states += [e.state for e in events]
            links = a.hashes if a.hashes is not None else [(None, None)] * len(events)
            prev_hashes += [prev for prev, _ in links]
            digests += [digest for _, digest in links]
        receipts = [a.receipt for a in group]
        args = (
            [a.aggregate_id for a in group],
            [a.first_version for a in group],
            [r.owner if r else None for r in receipts],
            [r.key if r else None for r in receipts],
            [r.attempt if r else None for r in receipts],
            [a.result if a.receipt else None for a in group],
            e_appends,
            e_versions,
            topics,
            states,
            prev_hashes,
            digests,
        )
        connection: AbstractContextManager[Any] = (
            self._writer_connection() if writer else self.datastore.get_connection()
        )
        with connection as conn, conn.cursor() as curs:
            curs.execute(self.append_statement, args, prepare=True)
            rows = curs.fetchall()
        assert len(rows) == len(group)
        for a, row in zip(group, rows, strict=True):
            outcome = row["outcome"]
            if outcome == "conflict":
                a.error = IntegrityError(
                    f"version {a.first_version} of {a.aggregate_id} is already stored"
                )
            elif outcome == "taken_over":
                a.error = ReceiptTakenOver(
                    f"Idempotency-Key {a.receipt.key if a.receipt else None!r} was taken over."
                )
            elif row["aligned"]:
                start = row["first_position"]
                a.positions = list(range(start, start + len(a.events)))
            else:
                a.positions = self._stored_positions(a.events)
                assert a.positions is not None, "the events just appended are not in the store"

    @contextmanager
    def _writer_connection(self) -> Iterator[Any]:
        """The group commit writer's connection: the one kept since its last group, or a
        new one from the pool. Group after group goes to one PostgreSQL backend, whose caches
        stay warm, rather than to each of the pool's connections in turn (psycopg_pool hands
        them out first in, first out), which cost PostgreSQL a tenth more CPU per command.
        It goes back to the pool when the writer is idle (release_writer) and when a call on
        it fails (the library's errors raised, as for any of its connections)."""
        if self._kept is None:
            pooled = self.datastore.get_connection()
            self._kept_conn = pooled.__enter__()
            self._kept = pooled
        try:
            yield self._kept_conn
        except BaseException:
            kept = self._drop_kept()
            if kept is None or not kept.__exit__(*sys.exc_info()):
                raise

    def release_writer(self) -> None:
        """Give the writer's connection back to the pool (in the writer's turn, with
        nothing queued): an idle server's connections are all the pool's to check."""
        kept = self._drop_kept()
        if kept is not None:
            kept.__exit__(None, None, None)

    def _drop_kept(self) -> AbstractContextManager[Any] | None:
        kept, self._kept, self._kept_conn = self._kept, None, None
        return kept

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
