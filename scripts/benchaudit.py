"""bench_audit.py's in-process part: a store of N hashed events, and what reads it whole.

Each function times one pass over the store, in this process, with the code the server runs
(adapters/): the raw read and decode of every event (the floor), the Merkle log's append,
its rebuild from the events, and a full verification (every stream's chain, then the tree's
root recomputed in memory and compared with the stored log's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from benchload import BenchError

from adapters import audit_store, merkle, merkle_log
from adapters.audit_writer import BATCH as WRITER_BATCH
from adapters.audit_writer import LogWriter
from adapters.db import Database
from adapters.merkle_log import Leaf
from adapters.stored import StoredRow
from adapters.verify import check_stream

OWNER, RUNNER = "alice", "runner-1"  # the server's user and runner keys (benchserver)
EVENTS_PER_RUN = 1000  # a run: submitted, claimed, 998 outputs (its audit reads ~1,000)
OUTPUT_BATCH = 500  # outputs per command while filling
PAGE = 1000  # events per read


@dataclass
class Pass:
    """One timed pass over the store."""

    events: int
    seconds: float
    cpu: float  # this process's CPU seconds (the database's own work is not in it)

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


def timed(events: int, started: tuple[float, float]) -> Pass:
    """A pass of `events` that started at `started` (perf_counter, process_time)."""
    return Pass(events, time.perf_counter() - started[0], time.process_time() - started[1])


def start() -> tuple[float, float]:
    """A pass's start mark."""
    return time.perf_counter(), time.process_time()


def output(i: int) -> tuple[str, dict[str, Any]]:
    """One `tool.output` event of ~100 bytes of data (as bench_runners posts)."""
    text = ("line of tool output " * 6)[:60]
    return "tool.output", {"stream": "stdout", "n": i, "text": text}


def fill(url: str, data_dir: Path, events: int) -> tuple[Pass, list[UUID]]:
    """Store `events` events with their hashes, through an in-process runtime's engine
    (the write path minus HTTP): runs of EVENTS_PER_RUN events each, their outputs in
    batches of OUTPUT_BATCH. The pass, and the runs' ids."""
    from api.config import Config
    from api.service.runtime import Runtime

    runtime = Runtime(Config(database_url=url, data_dir=data_dir))
    engine: Any = runtime.engine
    batch = [output(i) for i in range(OUTPUT_BATCH)]
    runs: list[UUID] = []
    mark = start()
    stored = 0
    try:
        while stored < events:
            size = min(EVENTS_PER_RUN, max(3, events - stored))
            run_id = engine.submit_run(OWNER, f"audit bench run {len(runs)}").run_id
            _, lease = engine.claim_run(run_id, "bench-filler", RUNNER)
            left = size - 2
            while left > 0:
                n = min(left, OUTPUT_BATCH)
                engine.record_output(run_id, RUNNER, lease.fencing_token, batch[:n])
                left -= n
            runs.append(run_id)
            stored += size
        return timed(stored, mark), runs
    finally:
        runtime.close()


def pages(db: Database) -> Iterator[list[StoredRow]]:
    """Every event, a page at a time, in commit order."""
    position = 0
    while rows := db.events_after(position, PAGE):
        yield rows
        position = rows[-1].position


def read_decode(db: Database) -> Pass:
    """The floor: read every event (db.events_after pages) and decode its state."""
    mark, n, loads = start(), 0, orjson.loads
    for rows in pages(db):
        for row in rows:
            loads(row.state)
        n += len(rows)
    return timed(n, mark)


def all_leaves(db: Database) -> list[Leaf]:
    """Every event as a leaf, in commit order (as the writer reads them)."""
    leaves: list[Leaf] = []
    with db.reading() as cur:
        while found := audit_store.event_leaves(
            db, cur, leaves[-1].position if leaves else 0, PAGE
        ):
            if any(leaf is None for leaf in found):
                raise BenchError("an event has no hash: the store was not filled with hashes")
            leaves += [leaf for leaf in found if leaf is not None]
    return leaves


def append_log(db: Database, leaves: list[Leaf]) -> Pass:
    """merkle_log.append alone: the leaves (already in memory) in batches of the writer's
    size, one transaction each, on an emptied log."""
    with db.transaction() as cur:
        merkle_log.reset(cur)
    mark = start()
    for i in range(0, len(leaves), WRITER_BATCH):
        with db.transaction() as cur:
            merkle_log.append(cur, leaves[i : i + WRITER_BATCH])
    return timed(len(leaves), mark)


def rebuild_log(db: Database, writer: LogWriter) -> Pass:
    """The log writer's rebuild: empty the tree, read every event, append it (one
    transaction)."""
    mark = start()
    size = writer.rebuild()
    return timed(size, mark)


def verify(db: Database) -> tuple[Pass, str]:
    """Everything a full verification does: every stream's events read in sequence order
    and its chain recomputed (check_stream), then the Merkle root recomputed in memory
    from every event hash in commit order and compared with the stored log's. The pass,
    and what was found ("ok", or the first flaw)."""
    mark = start()
    with db.reading() as cur:
        found = cur.execute(f"SELECT DISTINCT originator_id FROM {db.events_table}")
        streams = [row[0] for row in found.fetchall()]
    hashes: list[tuple[int, bytes]] = []
    flaw = ""
    for raw in streams:
        stream = raw if isinstance(raw, UUID) else UUID(raw)

        def rows(stream: UUID = stream) -> Iterator[StoredRow]:
            after = 0
            while page := db.run_events(stream, after, PAGE):
                for row in page:
                    hashes.append((row.position, row.hash or b""))
                    yield row
                after = page[-1].sequence

        check = check_stream(rows())
        if check.first_bad is not None and not flaw:
            flaw = f"stream {stream}: {check.first_bad}"
    hashes.sort()
    root = merkle.mth([h for _, h in hashes])
    with db.reading() as cur:
        stored = merkle_log.root(cur, merkle_log.size(cur))
    if root != stored and not flaw:
        flaw = f"the recomputed root of {len(hashes)} events differs from the stored log's"
    return timed(len(hashes), mark), flaw or "ok"
