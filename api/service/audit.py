"""Audit use cases: a run's history checked against its chain, the Merkle log and the
latest signed checkpoint; checkpoints, the public key and proofs (docs/audit.md).

A run's audit names the first flaw it finds, by sequence, with one of these reasons:
- `missing_sequence`: an event is not in the store: a gap in the chain, or an event the
  Merkle log recorded for the run that the store no longer has (a history cut off at its
  end shows here: its chain alone still links);
- `prev_hash_mismatch`: an event does not link to the one before it;
- `hash_mismatch`: an event is not what its hash says, or its hash is not the one the
  Merkle log recorded for it (a run rewritten with recomputed hashes shows here, at its
  first rewritten sequence);
- `not_in_log`: an event the Merkle log went past without recording (added afterwards);
- `checkpoint_mismatch` (sequence null): the stored log no longer has the root that the
  latest checkpoint signed, or that checkpoint's signature does not verify: the log itself
  was changed, and its comparisons above prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from adapters import audit_store, merkle, merkle_log, readmodels
from adapters.audit_store import StoredCheckpoint
from adapters.checkpoints import NoteError, verify_note
from adapters.db import Cursor, Database, StoredRow
from adapters.notes import b64encode
from adapters.stored import current_state
from adapters.verify import HASH_MISMATCH, MISSING_SEQUENCE, Flaw, check_stream
from domain.errors import NotFound

if TYPE_CHECKING:
    from api.service.bootstrap import Services

NOT_IN_LOG = "not_in_log"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
PAGE = 1000


def run_audit(services: Services, run_id: UUID, owner: str) -> dict[str, Any]:
    """The run's audit: its chain recomputed, its events compared with the Merkle log, the
    log compared with the latest checkpoint, and its last event's inclusion proof."""
    db = services.db
    with db.reading() as cur:
        if readmodels.get_run(cur, str(run_id), owner) is None:
            raise NotFound("No such run.")
    stored: list[StoredRow] = []
    rows = _run_rows(db, run_id, stored)
    chain = check_stream(rows)
    for _ in rows:  # the rest, after a flaw: the log's comparison needs them all
        pass
    with db.reading() as cur:
        head_position, _ = merkle_log.head(cur)
        leaves = audit_store.stream_leaves(cur, run_id)
        checkpoint = audit_store.latest_checkpoint(cur)
        log_flaw = _log_flaw(stored, leaves, head_position)
        signed_ok = checkpoint is None or _checkpoint_holds(cur, checkpoint)
        inclusion = _last_inclusion(cur, stored, leaves, checkpoint)
    flaws = [flaw for flaw in (chain.first_bad, log_flaw) if flaw is not None]
    first_bad: dict[str, Any] | None = None
    if flaws:
        flaw = min(flaws, key=lambda f: f.sequence)
        first_bad = {"sequence": flaw.sequence, "reason": flaw.reason}
    elif not signed_ok:
        first_bad = {"sequence": None, "reason": CHECKPOINT_MISMATCH}
    last = stored[-1].hash if stored else None
    body: dict[str, Any] = {
        "run_id": str(run_id),
        "valid": first_bad is None,
        "events": len(stored),
        "head_hash": None if last is None else last.hex(),
    }
    if first_bad is not None:
        body["first_bad"] = first_bad
    body["checkpoint"] = None if checkpoint is None else checkpoint_summary(checkpoint)
    body["inclusion"] = inclusion
    return body


def _run_rows(db: Database, run_id: UUID, kept: list[StoredRow]) -> Iterator[StoredRow]:
    """The run's stored events in sequence order, a page at a time, each also kept."""
    after = 0
    while True:
        page = db.run_events(run_id, after, PAGE)
        for row in page:
            kept.append(row)
            yield row
        if len(page) < PAGE:
            return
        after = page[-1].sequence


def _log_flaw(
    stored: list[StoredRow], leaves: list[audit_store.StreamLeaf], head_position: int
) -> Flaw | None:
    """The first event (by sequence) where the store and the Merkle log disagree."""
    recorded: dict[int, audit_store.StreamLeaf] = {}
    for leaf in leaves:  # a sequence logged twice was rewritten: the first is the original
        recorded.setdefault(leaf.sequence, leaf)
    flaws: list[Flaw] = []
    for row in stored:
        original = recorded.get(row.sequence)
        if original is None:
            if row.position <= head_position:
                flaws.append(Flaw(row.sequence, NOT_IN_LOG))
            continue  # not logged yet
        if row.hash is None or merkle.leaf_hash(row.hash) != original.leaf_hash:
            flaws.append(Flaw(row.sequence, HASH_MISMATCH))
    present = {row.sequence for row in stored}
    missing = [sequence for sequence in recorded if sequence not in present]
    if missing:
        flaws.append(Flaw(min(missing), MISSING_SEQUENCE))
    return min(flaws, key=lambda f: f.sequence) if flaws else None


def _checkpoint_holds(cur: Cursor, checkpoint: StoredCheckpoint) -> bool:
    """True when the checkpoint's signature verifies and the stored log has its root."""
    try:
        signed = verify_note(checkpoint.note, checkpoint.vkey)
        return merkle_log.root(cur, signed.size) == signed.root_hash
    except (NoteError, merkle_log.NotInLog, RuntimeError):
        return False


def _last_inclusion(
    cur: Cursor,
    stored: list[StoredRow],
    leaves: list[audit_store.StreamLeaf],
    checkpoint: StoredCheckpoint | None,
) -> dict[str, Any] | None:
    """The proof that the run's last event is in the latest checkpoint's tree (None until
    a checkpoint covers it)."""
    if not stored or checkpoint is None:
        return None
    last = stored[-1]
    leaf = next((leaf for leaf in leaves if leaf.position == last.position), None)
    if leaf is None or leaf.leaf_index >= checkpoint.tree_size:
        return None
    return inclusion_body(cur, leaf.leaf_index, checkpoint.tree_size)


def inclusion_body(cur: Cursor, leaf_index: int, tree_size: int) -> dict[str, Any]:
    """An inclusion proof as the API gives it."""
    try:
        hashes = merkle_log.inclusion(cur, leaf_index, tree_size)
    except RuntimeError:  # nodes missing: the log needs a rebuild; no proof to give
        raise NotFound("The Merkle log cannot prove this now.") from None
    return {
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "hashes": [b64encode(h) for h in hashes],
    }


def checkpoint_summary(checkpoint: StoredCheckpoint) -> dict[str, Any]:
    """A checkpoint as the run audit shows it."""
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": b64encode(checkpoint.root_hash),
        "signed_note": checkpoint.note,
    }


def checkpoint_document(checkpoint: StoredCheckpoint) -> dict[str, Any]:
    """A checkpoint as `GET /api/audit/checkpoint` gives it in JSON."""
    return {
        **checkpoint_summary(checkpoint),
        "vkey": checkpoint.vkey,
        "signed_at": checkpoint.signed_at,
    }


def get_checkpoint(services: Services, tree_size: int | None) -> StoredCheckpoint:
    """The latest checkpoint, or the one kept for `tree_size`."""
    with services.db.reading() as cur:
        if tree_size is None:
            found = audit_store.latest_checkpoint(cur)
        else:
            found = audit_store.checkpoint_at(cur, tree_size)
    if found is None:
        what = "yet" if tree_size is None else f"of tree size {tree_size}"
        raise NotFound(f"No checkpoint was signed {what}.")
    return found


def public_key(services: Services) -> dict[str, Any]:
    """The key this server signs checkpoints with."""
    signer = services.runtime.signer
    return {
        "key_name": signer.name,
        "algorithm": "ed25519",
        "public_key": b64encode(signer.public_key),
        "vkey": signer.vkey,
    }


def inclusion(
    services: Services, owner: str, position: int, tree_size: int | None
) -> dict[str, Any]:
    """The inclusion proof of the caller's event at `position` in the tree of `tree_size`
    (by default the latest checkpoint's); not found for anyone else's event."""
    db = services.db
    rows = db.events_after(position - 1, 1)
    if not rows or rows[0].position != position or _owner_of(db, rows[0].run_id) != owner:
        raise NotFound("No such event.")
    with db.reading() as cur:
        leaf_index = merkle_log.leaf_index_of(cur, position)
        if tree_size is None:
            latest = audit_store.latest_checkpoint(cur)
            tree_size = 0 if latest is None else latest.tree_size
        if leaf_index is None or leaf_index >= tree_size:
            raise NotFound("The event is not in a tree of that size (yet).")
        if tree_size > merkle_log.size(cur):
            raise NotFound(f"The log has no tree of size {tree_size} yet.")
        return inclusion_body(cur, leaf_index, tree_size)


def _owner_of(db: Database, stream_id: UUID) -> str | None:
    """Whose run or project a stream is, from its first event (None if unreadable)."""
    first = db.run_events(stream_id, 0, 1)
    if not first or first[0].sequence != 1:
        return None
    try:
        owner = current_state(first[0].topic, first[0].state).get("owner")
    except orjson.JSONDecodeError:
        return None
    return owner if isinstance(owner, str) else None


def consistency(services: Services, first: int, second: int) -> dict[str, Any]:
    """The proof that the tree of size `second` extends the tree of size `first`."""
    with services.db.reading() as cur:
        if second > merkle_log.size(cur):
            raise NotFound(f"The log has no tree of size {second} yet.")
        try:
            hashes = merkle_log.consistency(cur, first, second)
        except RuntimeError:
            raise NotFound("The Merkle log cannot prove this now.") from None
    return {"from": first, "to": second, "hashes": [b64encode(h) for h in hashes]}
