"""An export checked offline (`runledger verify --file`, and `runledger import` before it
writes anything): every line well formed, every event's stored form its envelope, every
stream's chain, and, in an export of everything, the Merkle tree's root at each kept
checkpoint's size and the checkpoint's signature.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from adapters import merkle
from adapters.audit_checks import Chains, Frontier, event_place
from adapters.checkpoints import NoteError, parse_checkpoint
from adapters.export_format import (
    CheckpointLine,
    EventLine,
    Header,
    LineError,
    envelope_hash,
    parse_header,
    parse_line,
    stored_form_problem,
)
from adapters.ledger_verify import KeptCheckpoint, Report, check_checkpoint, follow, noop
from adapters.store_audit import Progress


def verify_export(
    lines: Iterable[bytes], keys: Sequence[str] = (), progress: Progress = noop
) -> Report:
    """Check an export; signatures against `keys` (else the keys the file names, which
    proves only that the file is intact, not who signed it)."""
    report = Report()
    reading = iter(lines)
    first = next(reading, None)
    if first is None:
        report.fail("line 1", "empty file")
        return report
    try:
        header = parse_header(_terminated(1, first))
    except LineError as exc:
        report.fail(f"line {exc.line}", exc.reason)
        return report
    chains, leaves = Chains(), bytearray()
    checkpoints: list[CheckpointLine] = []
    for number, raw in enumerate(reading, start=2):
        try:
            line = parse_line(number, _terminated(number, raw))
        except LineError as exc:
            report.fail(f"line {exc.line}", exc.reason)
            continue
        if isinstance(line, CheckpointLine):
            checkpoints.append(line)
            continue
        if checkpoints:
            report.fail(f"line {number}", "an event after the checkpoints")
        _event(report, chains, header, line)
        leaves += line.row.hash or bytes(merkle.HASH_SIZE)
        progress(1)
    report.streams = len(chains.kinds)
    _tree(report, header, leaves, checkpoints, keys)
    return report


def _terminated(number: int, raw: bytes) -> bytes:
    if not raw.endswith(b"\n"):
        raise LineError(number, "does not end with a newline")
    return raw[:-1]


def _event(report: Report, chains: Chains, header: Header, line: EventLine) -> None:
    row = line.row
    where = event_place(line.kind, row.run_id, row.sequence)
    problem = stored_form_problem(line)
    if problem is not None:
        report.fail(where, f"line {line.line}: {problem}")
    name, scoped = header.scope
    if name == "run" and (line.kind, row.run_id) != ("run", UUID(str(scoped))):
        report.fail(where, f"line {line.line}: not of the run exported")
    elif name == "project":
        if line.kind == "project" and row.run_id != UUID(str(scoped)):
            report.fail(where, f"line {line.line}: not of the project exported")
        elif (
            line.kind == "run"
            and row.sequence == 1
            and line.envelope["data"].get("project_id") != scoped
        ):
            report.fail(where, f"line {line.line}: a run of another project")
    follow(report, chains, row, envelope_hash(line.envelope))


def _tree(
    report: Report,
    header: Header,
    leaves: bytearray,
    checkpoints: list[CheckpointLine],
    keys: Sequence[str],
) -> None:
    """The Merkle root at each checkpoint's size, and the checkpoints themselves."""
    size = len(leaves) // merkle.HASH_SIZE
    if header.scope[0] != "all":
        if checkpoints:
            report.fail(f"line {checkpoints[0].line}", "checkpoints in an export of a part")
        report.notes.append(
            "an export of one run or project: its chains checked; the "
            "Merkle log is checked on an export of --all"
        )
        return
    wanted: set[int] = set()
    origins, vkeys = set(), {c.vkey for c in checkpoints}
    for before, line in zip([None, *checkpoints], checkpoints, strict=False):
        if before is not None and line.tree_size <= before.tree_size:
            report.fail(f"line {line.line}", "checkpoints not in increasing size")
        try:
            parsed = parse_checkpoint(line.note)
        except NoteError as exc:
            report.fail(f"line {line.line}", f"not a checkpoint ({exc})")
            continue
        origins.add(parsed.origin)
        if parsed.size != line.tree_size:
            report.fail(f"line {line.line}", "tree_size is not the checkpoint's")
        wanted.add(parsed.size)
    if tuple(sorted(vkeys)) != header.vkeys or origins != (
        set() if header.origin is None else {header.origin}
    ):
        report.fail("line 1", "origin or vkeys are not the checkpoints'")
    frontier, roots = Frontier(), {0: merkle.EMPTY_ROOT}
    for at in range(size):
        frontier.add(bytes(leaves[at * merkle.HASH_SIZE : (at + 1) * merkle.HASH_SIZE]))
        if frontier.size in wanted:
            roots[frontier.size] = frontier.root()
    report.tree_size, report.root_hash = size, frontier.root()
    if checkpoints and not keys:
        report.notes.append(
            "signatures checked with the keys the file names: give --public-key to know who signed"
        )
    for line in checkpoints:
        kept = KeptCheckpoint(f"checkpoint {line.tree_size} (line {line.line})", line.note)
        check_checkpoint(report, kept, list(keys) or [line.vkey], roots, size)
