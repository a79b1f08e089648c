"""Which stored event each leaf of the Merkle log is (adapters/merkle_log.py keeps the
leaves' hashes and the tree; this keeps the way back to the events), in rows that grow with
the log's irregularities rather than with its leaves:

- `merkle_positions (leaf_index, position)`: the leaves where a run of consecutive
  positions starts. Leaf i of a run that starts at leaf s, position p, is the event at
  position p + (i - s). Positions skip numbers only where a PostgreSQL sequence value was
  taken by a write rolled back, so the table stays a few rows long (one on SQLite).
- `merkle_streams (leaf_index, stream_id, sequence, count)`: runs of leaves that are one
  stream's consecutive events: leaves leaf_index … + count - 1 are the stream's (a run's or
  project's; its UUID's 16 bytes) events sequence … + count - 1. A batch of 100 events to
  one run is one row; interleaved single events are a row each.

A run (of either kind) ends where the next leaf does not continue it, whatever the batches
the log was appended in, so a rebuild gives the same rows.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING
from uuid import UUID

from adapters.db import Cursor

if TYPE_CHECKING:
    from adapters.merkle_log import Leaves

TABLES = ("merkle_positions", "merkle_streams")
INDEXES = ("merkle_positions_position", "merkle_streams_stream")
_ROWS_PER_INSERT = 900  # parameters per INSERT on SQLite: under that same limit


def create_tables(cur: Cursor, blob: str) -> None:
    """Create the tables (in the caller's transaction); safe to repeat."""
    cur.execute(
        "CREATE TABLE IF NOT EXISTS merkle_positions ("
        " leaf_index BIGINT PRIMARY KEY, position BIGINT NOT NULL)"
    )
    cur.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS merkle_positions_position ON merkle_positions (position)"
    )
    cur.execute(
        "CREATE TABLE IF NOT EXISTS merkle_streams ("
        f" leaf_index BIGINT PRIMARY KEY, stream_id {blob} NOT NULL,"
        " sequence BIGINT NOT NULL, count BIGINT NOT NULL)"
    )
    cur.execute("CREATE INDEX IF NOT EXISTS merkle_streams_stream ON merkle_streams (stream_id)")


def reset(cur: Cursor) -> None:
    """Forget every leaf's event."""
    cur.execute("DELETE FROM merkle_positions")
    cur.execute("DELETE FROM merkle_streams")


def record(cur: Cursor, at: int, after: int, leaves: Leaves) -> None:
    """Record which events `leaves` are: they become leaves at, at + 1, …; `after` is the
    position of leaf at - 1 (0 for an empty log)."""
    positions = leaves.positions
    n = len(positions)
    starts: list[tuple[int, int]] = []
    # Rising positions (the caller checked them) that skip none continue the last run.
    if not (at and positions[0] == after + 1 and positions[-1] - positions[0] == n - 1):
        previous = after
        for offset, position in enumerate(positions):
            if position != previous + 1 or at + offset == 0:
                starts.append((at + offset, position))
            previous = position
    insert(cur, "merkle_positions (leaf_index, position)", ("bigint", "bigint"), starts)
    last: tuple[int, bytes, int, int] | None = None  # the log's last run, if leaf at - 1 ends it
    if at:
        row = cur.execute(
            "SELECT leaf_index, stream_id, sequence, count FROM merkle_streams "
            "ORDER BY leaf_index DESC LIMIT 1"
        ).fetchone()
        if row is not None and int(row[0]) + int(row[3]) == at:
            last = (int(row[0]), bytes(row[1]), int(row[2]), int(row[3]))
    runs: list[tuple[int, bytes, int, int]] = []
    first, stream, sequence, count = last if last is not None else (at, b"", 0, 0)
    sequences = leaves.sequences
    offset = 0
    for key, members in groupby(leaves.streams):  # one stream's leaves in a row
        size = len(list(members))
        mine = sequences[offset : offset + size]
        # Most often one run (a batch of one stream's events): checked in C.
        consecutive = mine == list(range(mine[0], mine[0] + size))
        parts = [mine] if consecutive else _consecutive(mine)
        for part in parts:
            if count and key == stream and part[0] == sequence + count:
                count += len(part)
            else:
                if count:
                    runs.append((first, stream, sequence, count))
                first, stream, sequence, count = at + offset, key, part[0], len(part)
            offset += len(part)
    runs.append((first, stream, sequence, count))
    if last is not None and runs[0][0] == last[0]:  # the log's last run, continued or not
        if runs[0][3] != last[3]:
            cur.execute(
                "UPDATE merkle_streams SET count = ? WHERE leaf_index = ?", (runs[0][3], last[0])
            )
        runs = runs[1:]
    columns = ("bigint", "bytea", "bigint", "bigint")
    insert(cur, "merkle_streams (leaf_index, stream_id, sequence, count)", columns, runs)


def _consecutive(sequences: list[int]) -> list[list[int]]:
    """Sequences split where one does not follow the one before."""
    parts = [[sequences[0]]]
    for sequence in sequences[1:]:
        if sequence == parts[-1][-1] + 1:
            parts[-1].append(sequence)
        else:
            parts.append([sequence])
    return parts


def leaf_index_of(cur: Cursor, position: int, size: int) -> int | None:
    """The leaf index of the event at `position` in a log of `size` leaves, if it has one."""
    row = cur.execute(
        "SELECT leaf_index, position FROM merkle_positions WHERE position <= ? "
        "ORDER BY position DESC LIMIT 1",
        (position,),
    ).fetchone()
    if row is None:
        return None
    start, first = int(row[0]), int(row[1])
    index = start + position - first
    if index >= size:
        return None
    following = cur.execute(
        "SELECT leaf_index FROM merkle_positions WHERE leaf_index > ? ORDER BY leaf_index LIMIT 1",
        (start,),
    ).fetchone()
    return None if following is not None and index >= int(following[0]) else index


def positions(cur: Cursor, indexes: Sequence[int]) -> list[int]:
    """The positions of the events that leaves `indexes` (in rising order, all in the log)
    are."""
    if not indexes:
        return []
    rows = cur.execute(
        "SELECT leaf_index, position FROM merkle_positions WHERE leaf_index >= "
        "(SELECT MAX(leaf_index) FROM merkle_positions WHERE leaf_index <= ?) "
        "AND leaf_index <= ? ORDER BY leaf_index",
        (indexes[0], indexes[-1]),
    ).fetchall()
    starts = [int(r[0]) for r in rows]
    firsts = [int(r[1]) for r in rows]
    found = []
    for index in indexes:
        k = bisect_right(starts, index) - 1
        if k < 0:
            raise RuntimeError(f"the Merkle log lacks leaf {index}'s position: rebuild it")
        found.append(firsts[k] + index - starts[k])
    return found


def stream_runs(cur: Cursor, stream_id: UUID) -> list[tuple[int, int, int]]:
    """A stream's runs of leaves, in leaf order: (first leaf index, first sequence, count)."""
    rows = cur.execute(
        "SELECT leaf_index, sequence, count FROM merkle_streams WHERE stream_id = ? "
        "ORDER BY leaf_index",
        (stream_id.bytes,),
    ).fetchall()
    return [(int(i), int(s), int(n)) for i, s, n in rows]


def streams(cur: Cursor, start: int, end: int) -> list[tuple[str, int]]:
    """(stream id, sequence) of each leaf in [start, end), in order."""
    rows = cur.execute(
        "SELECT leaf_index, stream_id, sequence, count FROM merkle_streams WHERE leaf_index >= "
        "(SELECT MAX(leaf_index) FROM merkle_streams WHERE leaf_index <= ?) "
        "AND leaf_index < ? ORDER BY leaf_index",
        (start, end),
    ).fetchall()
    found: list[tuple[str, int]] = []
    for first, stream, sequence, count in rows:
        name = str(UUID(bytes=bytes(stream)))
        for index in range(max(start, int(first)), min(end, int(first) + int(count))):
            found.append((name, int(sequence) + index - int(first)))
    if len(found) != end - start:
        raise RuntimeError(f"the Merkle log lacks leaves [{start}, {end})'s streams: rebuild it")
    return found


def insert(
    cur: Cursor,
    into: str,
    pg_types: Sequence[str],
    rows: Sequence[tuple[object, ...]],
    on_conflict: str = "",
) -> None:
    """Insert rows (none: nothing); `pg_types` are the columns' types on PostgreSQL;
    `on_conflict`, an `ON CONFLICT …` clause, makes it an upsert."""
    if not rows:
        return
    if cur.postgres:
        # One array per column, in one short statement whose text never changes: psycopg
        # parses a query of hundreds of placeholders anew on every call (it caches short
        # ones only), which took a third of an append's time. PostgreSQL only, so psycopg's
        # own placeholder rather than `?`.
        # Sent in binary (`%b`): the text format escapes every element with regular
        # expressions, which cost more than the insert itself.
        arrays = ", ".join(f"%b::{kind}[]" for kind in pg_types)
        columns = [list(column) for column in zip(*rows, strict=True)]
        cur.execute(f"INSERT INTO {into} SELECT * FROM unnest({arrays}) {on_conflict}", columns)
        return
    per_insert = _ROWS_PER_INSERT // len(rows[0])
    for i in range(0, len(rows), per_insert):
        chunk = rows[i : i + per_insert]
        values = ", ".join(["(" + ", ".join("?" * len(chunk[0])) + ")"] * len(chunk))
        cur.execute(
            f"INSERT INTO {into} VALUES {values} {on_conflict}", [v for row in chunk for v in row]
        )
