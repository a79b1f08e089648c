#!/usr/bin/env python3
"""Reading event rows from PostgreSQL in text against binary form: CPU per row.

The event store's busiest readers (the change feed and the projections' catch-up, a stream's
replay, the Merkle log's rebuild) page through `SELECT position, id, version, topic, state,
prev_hash, hash` (adapters/db.py: `events_after`, `run_events`). An event row is mostly
bytea, which the text form sends as hex: twice its size, encoded by the server and decoded
by the client. This measures both forms in the same run, on the same rows (a fresh schema of
`--events` rows shaped like runner output: a 164-byte state and the two 32-byte chain
hashes), in rounds alternating the two, each reading every row in pages of 500 as
`DB.events_after` does: the server's CPU (its backend process) and this process's CPU, in µs
per row; the lower of each over the rounds.

    .venv/bin/python scripts/bench_event_rows.py [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchreport import DEFAULT_PG_URL, postgres_schema

from adapters.store import StoreSettings

STATE = (
    b'{"timestamp":"2026-12-06T18:00:00.000000+00:00","actor":"runner:bench","kind":'
    b'"tool.output","data":{"stream":"stdout","n":1,"text":"line of tool output line of t"}}'
)
PAGE = 500


def fill(conn: psycopg.Connection, table: sql.Composable, events: int) -> None:
    """The events table's reading columns, with `events` rows over 100 streams."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (notification_id bigserial PRIMARY KEY, originator_id uuid, "
            "originator_version bigint, topic text, state bytea, prev_hash bytea, hash bytea)"
        ).format(table)
    )
    streams = [uuid.uuid4() for _ in range(100)]
    columns = "(originator_id, originator_version, topic, state, prev_hash, hash)"
    copy = sql.SQL("COPY {} " + columns + " FROM STDIN").format(table)
    with conn.cursor() as cur, cur.copy(copy) as rows:
        for i in range(events):
            digest = os.urandom(32)
            rows.write_row(
                (streams[i % 100], i // 100 + 1, "runledger:run.output", STATE, digest, digest)
            )
    conn.execute(sql.SQL("ANALYZE {}").format(table))


def backend_cpu(pid: int) -> float:
    """A PostgreSQL backend's CPU seconds so far (it must run on this machine)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists() or "postgres" not in Path(f"/proc/{pid}/comm").read_text():
        raise SystemExit(f"PostgreSQL's backend {pid} is not a process of this machine")
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_all(url: str, table: sql.Composable, binary: bool) -> tuple[float, float, int]:
    """(server µs per row, client µs per row, rows) of one pass over the table."""
    select = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state, prev_hash, "
        "hash FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
    ).format(table)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid, position, count = row[0], 0, 0
        server, client = backend_cpu(pid), time.process_time()
        with conn.cursor(binary=binary) as cur:
            while rows := cur.execute(select, (position, PAGE), prepare=True).fetchall():
                count += len(rows)
                position = rows[-1][0]
        server, client = backend_cpu(pid) - server, time.process_time() - client
    return 1e6 * server / count, 1e6 * client / count, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args(argv)
    if args.events < 1000 or args.rounds < 1:
        parser.error("--events: at least 1000 (fewer read in less CPU than a clock tick)")
    conninfo = StoreSettings.from_url(args.pg_url).pg_conninfo
    with postgres_schema(args.pg_url) as url:
        schema, url = url.rpartition("schema=")[2], conninfo
        table = sql.Identifier(schema, "event_rows")
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn, table, args.events)
        best: dict[bool, list[float]] = {False: [1e9, 1e9], True: [1e9, 1e9]}
        for _ in range(args.rounds):
            for binary in (False, True):
                server, client, count = read_all(url, table, binary)
                if count != args.events:
                    print(f"read {count} rows of {args.events}", file=sys.stderr)
                    return 1
                best[binary] = [min(best[binary][0], server), min(best[binary][1], client)]
    print(
        f"event rows read from PostgreSQL: {args.events:,} rows, pages of {PAGE}, best of "
        f"{args.rounds} rounds, CPU µs per row"
    )
    print(f"{'form':<8} {'server':>8} {'client':>8} {'both':>8}")
    for binary in (False, True):
        server, client = best[binary]
        form = "binary" if binary else "text"
        print(f"{form:<8} {server:8.2f} {client:8.2f} {server + client:8.2f}")
    text, binary_total = sum(best[False]), sum(best[True])
    print(f"binary / text: {binary_total / text:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
