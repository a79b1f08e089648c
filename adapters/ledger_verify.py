"""`runledger verify`: a store's history, or an export's offline, checked end to end.

Against a store (`verify_store`): every stream's chain; the Merkle tree recomputed from the
events in commit order, each event against the stored log's leaf for it (which names an
event removed, inserted or rewritten since it was logged), and every kept checkpoint's root
and signature; plus checkpoints an auditor kept as files, which catch a history cut off or
rewritten together with its log. Against an export (`verify_export`): the same from the
file alone (adapters/export_format.py), the signatures with the public key(s) given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from adapters import merkle
from adapters.audit_checks import Chains, Failure, Frontier, event_place
from adapters.checkpoints import Checkpoint, NoteError, parse_checkpoint, verify_note
from adapters.db import Database, StoredRow
from adapters.store_audit import (
    Progress,
    StoredLeaf,
    all_events,
    project_runs,
    stored_checkpoints,
    stored_leaves,
    stream_events,
)


@dataclass
class Report:
    """What a verification found: its failures (none: everything checks) and notes."""

    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events: int = 0
    streams: int = 0
    tree_size: int | None = None
    root_hash: bytes | None = None
    checkpoints: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures

    def fail(self, where: str, reason: str) -> None:
        """Record one failure."""
        self.failures.append(Failure(where, reason))


@dataclass(frozen=True)
class KeptCheckpoint:
    """A signed checkpoint to hold the history to, and where it came from (for messages)."""

    label: str
    note: str
    vkey: str | None = None  # the key that signed it, when known


def noop(_: int) -> None:
    """No progress to show."""
    return None


def verify_store(
    db: Database,
    scope: tuple[str, str | None] = ("all", None),
    kept: Sequence[KeptCheckpoint] = (),
    keys: Sequence[str] = (),
    progress: Progress = noop,
) -> Report:
    """Verify a store: one stream's (or a project's streams') chains, or with scope `all`
    every chain, the Merkle log and every checkpoint (kept in the store or given)."""
    report = Report()
    chains = Chains()
    if scope[0] != "all":
        assert scope[1] is not None
        stream = UUID(scope[1])
        streams = [stream, *sorted(project_runs(db, stream))] if scope[0] == "project" else [stream]
        for one in streams:
            for row in stream_events(db, one):
                follow(report, chains, row)
                progress(1)
        if not report.events:
            report.fail(f"{scope[0]} {scope[1]}", "no such stream in the store")
        report.streams = len(chains.kinds)
        report.notes.append("the Merkle log and checkpoints are checked with --all")
        return report
    stored = stored_checkpoints(db)
    checkpoints = [KeptCheckpoint(f"checkpoint {c.tree_size}", c.note, c.vkey) for c in stored]
    for c in stored:
        parsed = _parse(report, KeptCheckpoint(f"checkpoint {c.tree_size}", c.note))
        if parsed is not None and (parsed.size, parsed.root_hash) != (c.tree_size, c.root_hash):
            report.fail(f"checkpoint {c.tree_size}", "its note is not the size and root stored")
    sizes = _sizes(report, [*checkpoints, *kept])
    frontier, roots = Frontier(), {0: merkle.EMPTY_ROOT}
    leaves = _LeafMerge(report, chains, stored_leaves(db))
    for row in all_events(db):
        follow(report, chains, row)
        frontier.add(row.hash or bytes(merkle.HASH_SIZE))
        if frontier.size in sizes:
            roots[frontier.size] = frontier.root()
        leaves.match(row)
        progress(1)
    leaves.finish()
    report.streams = len(chains.kinds)
    report.tree_size, report.root_hash = frontier.size, frontier.root()
    if not leaves.seen and not stored:
        report.notes.append("the Merkle log has nothing to compare yet: chains checked")
    # The store's checkpoints, each with the key the store says signed it; the files an
    # auditor kept, with the keys given (else the store's).
    trusted = list(keys) or sorted({c.vkey for c in stored})
    for checkpoint in checkpoints:
        check_checkpoint(report, checkpoint, [checkpoint.vkey or ""], roots, frontier.size)
    others = sorted({c.vkey for c in stored} - set(keys)) if keys else []
    if others:
        report.notes.append(f"checkpoints in the store signed by keys not given: {others}")
    for checkpoint in kept:
        if not trusted:
            report.fail(checkpoint.label, "no public key to check it with (give --public-key)")
            continue
        check_checkpoint(report, checkpoint, trusted, roots, frontier.size)
    return report


def follow(report: Report, chains: Chains, row: StoredRow, digest: bytes | None = None) -> None:
    """Follow one event's chain, recording its stream's first flaw."""
    report.events += 1
    flaw = chains.follow(row, digest)
    if flaw is not None:
        kind = chains.kinds[row.run_id]
        report.fail(event_place(kind, row.run_id, flaw.sequence), flaw.reason)


def _parse(report: Report, checkpoint: KeptCheckpoint) -> Checkpoint | None:
    try:
        return parse_checkpoint(checkpoint.note)
    except NoteError as exc:
        report.fail(checkpoint.label, f"not a checkpoint ({exc})")
        return None


def _sizes(report: Report, checkpoints: Iterable[KeptCheckpoint]) -> set[int]:
    quiet = Report()  # parse errors are reported when each is checked
    return {p.size for c in checkpoints if (p := _parse(quiet, c)) is not None}


def check_checkpoint(
    report: Report,
    checkpoint: KeptCheckpoint,
    keys: Sequence[str],
    roots: dict[int, bytes],
    size: int,
) -> None:
    """A checkpoint's signature (by one of the keys) and its root against the events'."""
    report.checkpoints += 1
    parsed, problems = None, []
    for key in keys:
        try:
            parsed = verify_note(checkpoint.note, key)
            break
        except NoteError as exc:
            problems.append(str(exc))
    if parsed is None:
        report.fail(checkpoint.label, f"bad signature ({'; '.join(problems) or 'no key'})")
        return
    root = roots.get(parsed.size)
    if root is None:
        report.fail(
            checkpoint.label,
            f"signed for {parsed.size} events, the history holds {size}: events were "
            "removed (the history cut off, or deleted from)",
        )
    elif root != parsed.root_hash:
        report.fail(
            checkpoint.label,
            f"its root is not the events' tree at size {parsed.size}: the history was rewritten",
        )


class _LeafMerge:
    """Walks the stored Merkle log's leaves beside the events (both in commit order)."""

    def __init__(self, report: Report, chains: Chains, leaves: Iterator[StoredLeaf]) -> None:
        self.report, self.chains, self.leaves = report, chains, leaves
        self.leaf = next(leaves, None)
        self.seen = self.leaf is not None

    def match(self, row: StoredRow) -> None:
        """Compare an event with the log's leaf for its position, if the log has reached it."""
        while self.leaf is not None and self.leaf.position < row.position:
            self._missing(self.leaf)
            self.leaf = next(self.leaves, None)
        leaf = self.leaf
        kind = self.chains.kinds[row.run_id]
        where = event_place(kind, row.run_id, row.sequence)
        if leaf is None:
            return  # past the log's head: not logged yet
        if leaf.position > row.position:
            self.report.fail(where, "stored but not in the Merkle log: inserted after it")
            return
        if leaf.stream_id is not None and (UUID(leaf.stream_id), leaf.sequence) != (
            row.run_id,
            row.sequence,
        ):
            self.report.fail(where, f"leaf {leaf.leaf_index} of the Merkle log is another event")
        elif leaf.leaf_hash != merkle.leaf_hash(row.hash or b""):
            self.report.fail(
                where, f"not the event logged as leaf {leaf.leaf_index}: changed since"
            )
        self.leaf = next(self.leaves, None)

    def finish(self) -> None:
        """Leaves left over: events the log has and the store no longer does."""
        while self.leaf is not None:
            self._missing(self.leaf)
            self.leaf = next(self.leaves, None)

    def _missing(self, leaf: StoredLeaf) -> None:
        if leaf.stream_id is None or leaf.sequence is None:
            where = f"position {leaf.position}"
        else:
            kind = self.chains.kinds.get(UUID(leaf.stream_id), "run")
            where = event_place(kind, leaf.stream_id, leaf.sequence)
        self.report.fail(where, f"in the Merkle log (leaf {leaf.leaf_index}), not in the store")
