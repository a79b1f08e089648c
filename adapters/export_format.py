"""The export file (docs/audit.md, "Export format"): NDJSON, one JSON object a line.

    {"format": "runledger-export", "version": 1, "origin": …, "vkeys": […], "scope": …}
    {"envelope": {…, "prev_hash": …, "hash": …}, "version": n, "topic": …, "state": "…"}
    …                                                      one line per event, commit order
    {"checkpoint": "<signed note>", "tree_size": n, "vkey": "…"}
    …                                                      every kept checkpoint (`--all`)

Reading is strict: every line must have exactly its keys, and every value is checked
(the envelope by its hash and its chain, the stored form against the envelope, the
checkpoints by their signatures), so that no changed byte goes unnoticed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from adapters.chain import canonical, recorded_envelope
from adapters.stored import EVENT_CLASSES, StoredRow
from domain.projects import Project
from domain.runs import Run
from domain.topics import PROJECT_TOPICS, TYPES_BY_TOPIC

FORMAT = "runledger-export"
VERSION = 1
HEADER_KEYS = frozenset({"format", "version", "origin", "vkeys", "scope"})
EVENT_KEYS = frozenset({"envelope", "version", "topic", "state"})
CHECKPOINT_KEYS = frozenset({"checkpoint", "tree_size", "vkey"})
RUN_ENVELOPE = frozenset({"run_id", "sequence", "type", "at", "actor", "data", "prev_hash", "hash"})
PROJECT_ENVELOPE = frozenset({"project_id", "type", "at", "actor", "data", "prev_hash", "hash"})
_HEX = re.compile(r"[0-9a-f]{64}")
_KNOWN_TOPICS = frozenset({*TYPES_BY_TOPIC, Run.OutputRecorded.TOPIC})
_AGGREGATE_TOPIC = {"run": Run.Submitted.TOPIC, "project": Project.Created.TOPIC}
_FIRST_TOPIC = {"run": "runledger:Run", "project": "runledger:Project"}


class LineError(ValueError):
    """A line that is not what the format says (its number and why)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Header:
    """The first line: the format, the log's origin and keys, what was exported."""

    origin: str | None
    vkeys: tuple[str, ...]
    scope: tuple[str, str | None]  # ("all", None) | ("run", id) | ("project", id)


@dataclass(frozen=True)
class EventLine:
    """One event: its envelope (with its hash) and the stored form it was recorded as."""

    line: int
    kind: str  # "run" | "project"
    row: StoredRow
    envelope: dict[str, Any]


@dataclass(frozen=True)
class CheckpointLine:
    """One kept checkpoint: the signed note, its tree size, the key that signed it."""

    line: int
    tree_size: int
    note: str
    vkey: str


# -- writing -----------------------------------------------------------------------------


def header_line(origin: str | None, vkeys: list[str], scope: tuple[str, str | None]) -> bytes:
    """The first line of an export."""
    name, value = scope
    header = {
        "format": FORMAT,
        "version": VERSION,
        "origin": origin,
        "vkeys": sorted(set(vkeys)),
        "scope": {name: True if value is None else value},
    }
    return orjson.dumps(header) + b"\n"


def event_line(row: StoredRow) -> bytes:
    """One stored event as a line: the envelope as recorded, with its hash, and the exact
    stored form (topic, state text) import needs to store the same event."""
    if row.prev_hash is None or row.hash is None:
        raise ValueError(f"{row.run_id} {row.sequence} has no hash yet")
    envelope = recorded_envelope(row.run_id, row.sequence, row.topic, row.state, row.prev_hash)
    envelope["hash"] = row.hash.hex()
    line = {
        "envelope": envelope,
        "version": row.sequence,
        "topic": row.topic,
        "state": row.state.decode("utf-8"),
    }
    return orjson.dumps(line) + b"\n"


def checkpoint_line(tree_size: int, note: str, vkey: str) -> bytes:
    """One kept checkpoint as a line."""
    return orjson.dumps({"checkpoint": note, "tree_size": tree_size, "vkey": vkey}) + b"\n"


# -- reading -----------------------------------------------------------------------------


def parse_header(raw: bytes) -> Header:
    """The first line, or LineError."""
    value = _object(1, raw, HEADER_KEYS)
    if value["format"] != FORMAT or value["version"] != VERSION:
        raise LineError(1, f"not a {FORMAT} file of version {VERSION}")
    origin, vkeys, scope = value["origin"], value["vkeys"], value["scope"]
    if origin is not None and not isinstance(origin, str):
        raise LineError(1, "origin is not text")
    if not isinstance(vkeys, list) or not all(isinstance(k, str) for k in vkeys):
        raise LineError(1, "vkeys is not a list of keys")
    if vkeys != sorted(set(vkeys)):
        raise LineError(1, "vkeys are not sorted and unique")
    if not isinstance(scope, dict) or len(scope) != 1:
        raise LineError(1, "scope is not one of all, run, project")
    ((name, what),) = scope.items()
    if name == "all" and what is True:
        return Header(origin, tuple(vkeys), ("all", None))
    if name in ("run", "project") and isinstance(what, str) and _uuid(what) is not None:
        return Header(origin, tuple(vkeys), (name, what))
    raise LineError(1, "scope is not one of all, run, project")


def parse_line(number: int, raw: bytes) -> EventLine | CheckpointLine:
    """A later line: an event or a checkpoint, well formed (not yet verified)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LineError(number, f"not JSON ({exc})") from None
    if isinstance(value, dict) and "checkpoint" in value:
        return _checkpoint(number, _object(number, raw, CHECKPOINT_KEYS, value))
    return _event(number, _object(number, raw, EVENT_KEYS, value))


def _object(number: int, raw: bytes, keys: frozenset[str], value: Any = None) -> dict[str, Any]:
    if value is None:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise LineError(number, f"not JSON ({exc})") from None
    if not isinstance(value, dict) or set(value) != keys:
        raise LineError(number, f"not a line of the format (keys {', '.join(sorted(keys))})")
    return value


def _checkpoint(number: int, value: dict[str, Any]) -> CheckpointLine:
    note, size, vkey = value["checkpoint"], value["tree_size"], value["vkey"]
    if not isinstance(note, str) or not isinstance(vkey, str) or not _natural(size):
        raise LineError(number, "checkpoint, tree_size or vkey of the wrong type")
    return CheckpointLine(number, size, note, vkey)


def _event(number: int, value: dict[str, Any]) -> EventLine:
    envelope, version, topic, state = (value[k] for k in ("envelope", "version", "topic", "state"))
    if not isinstance(envelope, dict) or not isinstance(topic, str) or not isinstance(state, str):
        raise LineError(number, "envelope, topic or state of the wrong type")
    if not _natural(version) or version < 1:
        raise LineError(number, "version is not a positive integer")
    kind = "project" if "project_id" in envelope else "run"
    if set(envelope) != (PROJECT_ENVELOPE if kind == "project" else RUN_ENVELOPE):
        raise LineError(number, "the envelope's fields are not a run's or a project's")
    stream = _uuid(envelope[f"{kind}_id"])
    prev, digest = envelope["prev_hash"], envelope["hash"]
    if stream is None or not _is_hex(prev) or not _is_hex(digest):
        raise LineError(number, "a malformed id or hash in the envelope")
    if kind == "run" and envelope["sequence"] != version:
        raise LineError(number, "the envelope's sequence is not the event's version")
    row = StoredRow(
        number, stream, version, topic, state.encode(), bytes.fromhex(prev), bytes.fromhex(digest)
    )
    return EventLine(number, kind, row, envelope)


def envelope_hash(envelope: dict[str, Any]) -> bytes:
    """SHA-256 of the canonical envelope without its hash: what its `hash` must be."""
    return hashlib.sha256(canonical({k: v for k, v in envelope.items() if k != "hash"})).digest()


def stored_form_problem(line: EventLine) -> str | None:
    """Why an event line's stored form (topic, state) is not the event its envelope says,
    or None: the envelope recomputed from it must be the line's, and what the envelope
    does not show (the first event's aggregate topic, the class version) must fit."""
    row = line.row
    if row.topic not in _KNOWN_TOPICS or (row.topic in PROJECT_TOPICS) != (line.kind == "project"):
        return f"unknown topic {row.topic!r} for a {line.kind}"
    try:
        state = orjson.loads(row.state)
        assert row.prev_hash is not None
        envelope = recorded_envelope(row.run_id, row.sequence, row.topic, row.state, row.prev_hash)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return "the stored state is not an event's"
    assert row.hash is not None
    if {**envelope, "hash": row.hash.hex()} != line.envelope:
        return "the stored state does not match the envelope"
    first = row.topic == _AGGREGATE_TOPIC[line.kind]
    if first != (row.sequence == 1) or state.get("originator_topic") != (
        _FIRST_TOPIC[line.kind] if first else None
    ):
        return "the stored state's aggregate topic does not fit its place"
    version = state.get("class_version", 1)
    current = getattr(EVENT_CLASSES.get(row.topic), "class_version", 1)
    if (
        not _natural(version)
        or not 1 <= version <= current
        or ("class_version" in state) != (version > 1)
    ):
        return f"class version {version!r} of {row.topic} is not one it had"
    if not _upcasts_add_fields(EVENT_CLASSES.get(row.topic), state, version, current):
        return f"the stored state already has the fields of a class version above {version}"
    return None


def _upcasts_add_fields(
    cls: type | None, state: dict[str, Any], version: int, current: int
) -> bool:
    """True when each upcast from `version` on adds a field the state lacks. The class
    version is outside the hash (the envelope does not show it): this holds it to the
    state, since every upcast so far adds fields, so a state that already holds them was
    not stored at the version it claims."""
    probe = dict(state)
    for step in range(version, current):
        before = set(probe)
        getattr(cls, f"upcast_v{step}_v{step + 1}")(probe)
        if set(probe) <= before:
            return False
    return True


def _natural(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and _HEX.fullmatch(value) is not None


def _uuid(value: Any) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = UUID(value)
    except ValueError:
        return None
    return parsed if str(parsed) == value else None
