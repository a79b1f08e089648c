"""`runledger import`: an export stored again, event for event, in an empty store.

The file is checked whole first (adapters/export_verify.py: every line, every stored form
against its envelope, every chain, every checkpoint's root), and refused, with nothing
written, when anything fails. Then its events are stored in the file's (commit) order with
their hashes, one stream's consecutive events per transaction, through the engine's
recorder; then the read models and the Merkle log catch up (the log signs a checkpoint
with this store's key). The same events in the same order: the same runs, sequences,
hashes, read models and Merkle roots, so the file's checkpoints, signed by the source's
key, verify against the new store too (`runledger verify --checkpoint`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from eventsourcing.persistence import StoredEvent

from adapters.export_format import EventLine, parse_header, parse_line
from adapters.export_verify import verify_export
from adapters.ledger_verify import Report, noop
from adapters.store_audit import Progress
from api.service.runtime import Runtime


class NotEmpty(RuntimeError):
    """Import goes into an empty store only."""


def import_file(
    runtime: Runtime,
    path: Path,
    checked: Progress = noop,
    stored: Progress = noop,
) -> Report:
    """Check the export at `path`, then store it (only if everything checks); the check's
    report, whose `events` is the number stored when it is ok."""
    if runtime.db.head() != 0:
        raise NotEmpty(f"the store {runtime.settings.describe()} is not empty")
    with path.open("rb") as lines:
        report = verify_export(lines, progress=checked)
    if not report.ok:
        return report
    with path.open("rb") as lines:
        for batch in _batches(_event_lines(lines)):
            events = [
                StoredEvent(
                    originator_id=row.run_id,
                    originator_version=row.sequence,
                    topic=row.topic,
                    state=row.state,
                )
                for row in (line.row for line in batch)
            ]
            hashes = [(line.row.prev_hash, line.row.hash) for line in batch]
            runtime.engine.recorder.insert_events(events, hashes=hashes)
            stored(len(batch))
    runtime.catch_up()
    runtime.audit_log.catch_up()  # this store's own log of the same leaves, and its checkpoint
    return report


def _event_lines(lines: Iterable[bytes]) -> Iterator[EventLine]:
    reading = iter(lines)
    parse_header(next(reading).rstrip(b"\n"))
    for number, raw in enumerate(reading, start=2):
        line = parse_line(number, raw.rstrip(b"\n"))
        if isinstance(line, EventLine):
            yield line


def _batches(lines: Iterable[EventLine], most: int = 500) -> Iterator[list[EventLine]]:
    """Runs of consecutive events of one stream (what one insert takes)."""
    batch: list[EventLine] = []
    for line in lines:
        if batch and (line.row.run_id != batch[-1].row.run_id or len(batch) >= most):
            yield batch
            batch = []
        batch.append(line)
    if batch:
        yield batch
