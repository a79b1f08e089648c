"""Answers of the operations routes (api/http/ops.py: health, server info, diagnostics) and
the audit routes (api/http/audit.py: a run's audit, checkpoints, the public key, proofs;
docs/audit.md). /metrics answers Prometheus text and the session routes no body."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from api.http.models.common import Answer, Timestamp


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# -- operations ------------------------------------------------------------------------------


class Healthy(Answer):
    """The server is up and its database answers."""

    status: Literal["ok"]


class Degraded(Answer):
    """The database does not answer (within about a second): retry after Retry-After."""

    status: Literal["degraded"]
    detail: str


class PublicKey(Answer):
    """The key this server signs its checkpoints with (docs/audit.md)."""

    key_name: str = Field(description="the signed notes' key name, also their origin line")
    algorithm: Literal["ed25519"]
    public_key: str = Field(description="the raw 32-byte Ed25519 public key, base64")
    vkey: str = Field(description="the verifier key: <name>+<key id hex>+<base64 of 0x01‖key>")


class ServerInfo(Answer):
    """This server's version, its kind of store, and its checkpoint signing key."""

    version: str
    store: Literal["sqlite", "postgres"]
    audit: PublicKey


class Progress(Answer):
    position: int = Field(description="the last global position it has taken in")
    lag: int = Field(description="head_position minus position")


class ReadModelProgress(Progress):
    size: int | None = Field(None, ge=0, description="the Merkle log's tree size")


class Worker(Answer):
    role: str = Field(description="RUNLEDGER_ROLE: api, worker or all")
    leader: bool = Field(description="whether this process holds the leader's duties now")


class Diagnostics(Answer):
    """This process's positions and lag, its event streams and its role."""

    head_position: int = Field(ge=0)
    read_models: dict[str, ReadModelProgress] = Field(
        description="each read model (runs, projects, board, …) and the Merkle log "
        "(`merkle`, with its tree `size`), by name, from their tracked positions"
    )
    change_feed: Progress
    subscribers: int = Field(ge=0, description="open event streams on this process")
    subscribers_dropped: int = Field(ge=0, description="streams ended for falling behind")
    worker: Worker


# -- audit -----------------------------------------------------------------------------------


class FirstBad(Answer):
    sequence: int | None = Field(description="null for checkpoint_mismatch")
    reason: Literal[
        "missing_sequence",
        "prev_hash_mismatch",
        "hash_mismatch",
        "not_in_log",
        "checkpoint_mismatch",
    ]


class CheckpointSummary(Answer):
    tree_size: int = Field(ge=0)
    root_hash: str = Field(description="base64")
    signed_note: str = Field(description="the c2sp.org signed note")


class InclusionProof(Answer):
    """An RFC 9162 inclusion proof of one leaf in the tree of tree_size (hashes in base64)."""

    leaf_index: int = Field(ge=0)
    tree_size: int = Field(ge=1)
    hashes: list[str]


class RunAudit(Answer):
    """A run's audit against its chain, the Merkle log and the latest checkpoint.

    The chain is recomputed, the events compared with the Merkle log, the log with the
    latest checkpoint; `inclusion` proves the run's last event in that checkpoint."""

    run_id: UUID
    valid: bool
    events: int = Field(ge=0, description="the run's stored events")
    head_hash: str | None = Field(description="the last event's hash (hex)")
    first_bad: FirstBad = Field(
        None,  # type: ignore[assignment]
        description="only when valid is false: the first flaw",
        json_schema_extra=_no_default,
    )
    checkpoint: CheckpointSummary | None = Field(description="the latest; null before the first")
    inclusion: InclusionProof | None = Field(
        description="the run's last event in the latest checkpoint; null until one covers it"
    )


class Checkpoint(CheckpointSummary):
    """A signed checkpoint, as JSON (with Accept: application/json)."""

    vkey: str = Field(description="the verifier key that signed it")
    signed_at: Timestamp


class ConsistencyProof(Answer):
    """An RFC 9162 proof that the tree of size `to` extends that of size `from`.

    Its hashes are in base64."""

    from_: int = Field(alias="from", ge=1)
    to: int = Field(ge=1)
    hashes: list[str]
