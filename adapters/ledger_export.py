"""`runledger export`: a store's events, in commit order, as an export file
(adapters/export_format.py), with the checkpoints it kept when everything is exported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO
from uuid import UUID

from adapters.checkpoints import NoteError, parse_checkpoint
from adapters.db import Database, StoredRow
from adapters.export_format import checkpoint_line, event_line, header_line
from adapters.ledger_verify import noop
from adapters.store_audit import (
    Progress,
    all_events,
    project_runs,
    stored_checkpoints,
    stream_events,
)


def export(
    db: Database, scope: tuple[str, str | None], out: BinaryIO, progress: Progress = noop
) -> int:
    """Write the export of a scope (`all`, or one `run` or `project` with its runs) to
    `out`; the number of events written. The checkpoints are read first, so that each
    covers events the file holds."""
    kept = stored_checkpoints(db) if scope[0] == "all" else []
    origins: set[str | None] = set()
    for checkpoint in kept:
        try:
            origins.add(parse_checkpoint(checkpoint.note).origin)
        except NoteError:
            origins.add(None)  # written as kept: verify will say what is wrong with it
    origin = next(iter(origins)) if len(origins) == 1 else None
    out.write(header_line(origin, [c.vkey for c in kept], scope))
    written = 0
    for row in _events(db, scope):
        out.write(event_line(row))
        written += 1
        progress(1)
    for checkpoint in kept:
        out.write(checkpoint_line(checkpoint.tree_size, checkpoint.note, checkpoint.vkey))
    return written


def _events(db: Database, scope: tuple[str, str | None]) -> Iterator[StoredRow]:
    name, value = scope
    if name == "all":
        yield from all_events(db)
        return
    assert value is not None
    stream = UUID(value)
    if name == "run":
        yield from stream_events(db, stream)
        return
    wanted = {stream, *project_runs(db, stream)}
    for row in all_events(db):
        if row.run_id in wanted:
            yield row
