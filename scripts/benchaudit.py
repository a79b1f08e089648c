"""bench_audit.py's in-process part: a store of N hashed events, and what reads it whole.

Each function times one pass over the store, in this process, with the code the server runs
(adapters/): the raw read and decode of every event (the floor), the Merkle log's append,
its rebuild from the events, and a full verification (every stream's chain, then the tree's
root recomputed in memory and compared with the stored log's). Then proof latency, over
HTTP, against a server on that store.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from benchload import BenchError
from benchreport import Report, Row, fmt_ms, percentile, progress
from benchserver import USER_KEY, LeanClient, Server

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


def stop_server(server: Server, store: str, report: Report) -> None:
    """Stop it; warn when it exits badly; keep its log's findings."""
    started_ok = server.proc is not None and server.proc.poll() is None
    code = server.stop()
    if started_ok and code not in (0, None, -signal.SIGTERM):
        report.warn(f"{store}: server exited with code {code} on SIGTERM")
    report.server_findings += [f"{store}: {line}" for line in server.findings()]


# -- 3. proofs over HTTP ----------------------------------------------------------------------


def caught_up(server: Server, size: int, timeout: float = 900.0) -> float:
    """Wait until the server's log is signed at `size`, the runs view is at the head and the
    server idles (it projects the store first: measured beside that, proofs would pay for
    its CPU)."""
    started = time.perf_counter()
    client = LeanClient(server, USER_KEY)
    try:
        while time.perf_counter() - started < timeout:
            server.check_alive()
            signed, _ = client.get(f"/api/audit/checkpoint?tree_size={size}")
            status, body = client.get("/api/diagnostics")
            if signed == 200 and status == 200:
                models = orjson.loads(body)["read_models"].values()
                if all(int(model["lag"]) <= 0 for model in models) and idle(server):
                    return time.perf_counter() - started
            time.sleep(0.5)
    finally:
        client.close()
    raise BenchError(f"the server did not catch up with the store within {timeout:.0f} s")


def idle(server: Server, window: float = 1.0) -> bool:
    """True when the server used under 10 % of a core over the next `window` seconds (the
    runs view is at the head before the other read models, policies and the feed are)."""
    before = server.cpu_seconds()
    time.sleep(window)
    return server.cpu_seconds() - before < 0.1 * window


def timed_gets(client: LeanClient, paths: list[str], report: Report, what: str) -> list[float]:
    """Each GET's latency; a warning for any answer but 200."""
    latencies, bad = [], 0
    for path in paths:
        started = time.perf_counter()
        status, body = client.get(path)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            bad += 1
            if bad == 1:
                report.warn(f"{what}: {status} {body[:200]!r} for {path}")
    return latencies


def proofs(
    store: str,
    url: str,
    data: Path,
    stored: tuple[list[int], list[str]],
    count: int,
    report: Report,
) -> None:
    """Inclusion, consistency and run-audit latency against a server on the filled store."""
    server = Server(url, data, client_timeout=120)
    positions, runs = stored
    size = len(positions)
    try:
        progress(f"{store}: serving the store; waiting for its read models and log")
        server.start_for(store)
        waited = caught_up(server, size)
        report.notes.append(
            f"{store}: a server started on the {size:,}-event store answered a checkpoint of "
            f"the whole log and was idle with the runs view at the head after {waited:.1f} s"
        )
        rng = random.Random(11)
        client = LeanClient(server, USER_KEY)
        cases = {
            "GET inclusion proof": [
                f"/api/audit/proofs/inclusion?position={rng.choice(positions)}&tree_size={size}"
                for _ in range(count)
            ],
            "GET consistency proof": [
                f"/api/audit/proofs/consistency?from={rng.randint(1, size)}&to={size}"
                for _ in range(count)
            ],
            "GET run audit (~1,000 events)": [
                f"/api/runs/{runs[k % len(runs)]}/audit" for k in range(max(5, count // 10))
            ],
        }
        try:
            for measure, paths in cases.items():
                progress(f"{store}: {measure} x {len(paths)}")
                client.get(paths[0])  # warm
                before = server.cpu_seconds()
                lat = timed_gets(client, paths, report, f"{store} {measure}")
                cpu = server.cpu_seconds() - before
                value = f"{fmt_ms(percentile(lat, 50))} / {fmt_ms(percentile(lat, 99))}"
                notes = (
                    f"n={len(lat)}, max {fmt_ms(max(lat))}, one client; server "
                    f"{1000 * cpu / len(lat):.2f} ms CPU/request; tree size {size:,}"
                )
                report.rows.append(Row(store, f"{measure} p50/p99", "1", value, notes=notes))
        finally:
            client.close()
    finally:
        stop_server(server, store, report)
