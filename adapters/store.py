"""Store settings: one database URL chooses SQLite or PostgreSQL for events and read models."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from adapters.stored import EVENT_CLASSES, current_state, domain_event
from domain.timestamps import format_timestamp, parse_timestamp

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class OrjsonTranscoder(Transcoder):
    """Stored event state as plain JSON, via orjson.

    The library's JSONTranscoder would read any `{"_type_": …}` dict inside a runner's
    opaque payload as one of its own encodings; here payloads stay exactly as sent.
    Events keep ids as strings, so the only non-JSON value is the event's top-level
    `timestamp`, which round-trips through the RFC 3339 text the API shows anyway.
    Runledger's own events are read through adapters.stored.current_state (LeanMapper
    included), which decodes the same form and upcasts (`class_version`).
    """

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_encode_default, option=orjson.OPT_PASSTHROUGH_DATETIME)

    def decode(self, data: bytes) -> Any:
        state = orjson.loads(data)
        stamp = state.get("timestamp")
        if isinstance(stamp, str):
            state["timestamp"] = parse_timestamp(stamp)
        return state


class LeanMapper(Mapper[UUID]):
    """The library's mapper, with the same stored form, minus two costs that runner output
    pays hundreds of times per request: the frozen StoredEvent's __init__ (made here as the
    library makes domain events, by setting __dict__), and the transcoder's callback for
    the event's timestamp (formatted here, the one way OrjsonTranscoder would). It reads
    runledger's events through current_state, the one decoding the API and projections use."""

    @property
    def plain(self) -> bool:
        """True when stored states are OrjsonTranscoder's JSON, neither compressed nor
        encrypted: what current_state reads."""
        return (
            self.cipher is None
            and self.compressor is None
            and isinstance(self.transcoder, OrjsonTranscoder)
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """A stored event as a domain event, upcast to its class's current version."""
        cls = EVENT_CLASSES.get(stored_event.topic)
        if cls is None or not self.plain:
            # Not one of runledger's events, or a stored form runledger never configures:
            # the library's steps (which upcast by the same class methods).
            return super().to_domain_event(stored_event)
        originator_id = stored_event.originator_id
        if not isinstance(originator_id, UUID):  # a recorder may give the id as text
            originator_id = UUID(str(originator_id))
        state = current_state(stored_event.topic, stored_event.state)
        return domain_event(cls, originator_id, stored_event.originator_version, state)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """A domain event as a stored event."""
        return self.to_stored_event_and_state(domain_event)[0]

    def to_stored_event_and_state(
        self, domain_event: Any
    ) -> tuple[StoredEvent, dict[str, Any] | None]:
        """A domain event as a stored event, and the state its bytes encode when they are
        plain JSON (None otherwise): what the hash chain hashes, without decoding it again."""
        cls = type(domain_event)
        state = domain_event.__dict__.copy()
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        stamp = state.get("timestamp")
        if isinstance(stamp, datetime) and isinstance(self.transcoder, OrjsonTranscoder):
            state["timestamp"] = format_timestamp(stamp)
        class_version = getattr(cls, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        stored_state = self.transcoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        stored = object.__new__(StoredEvent)
        object.__setattr__(
            stored,
            "__dict__",
            {
                "originator_id": originator_id,
                "originator_version": originator_version,
                "topic": get_topic(cls),
                "state": stored_state,
            },
        )
        return stored, state if self.plain else None


def _whole_seconds(seconds: float) -> int:
    """The library reads its timeouts as whole seconds: round up, at least 1."""
    return max(1, math.ceil(seconds))


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return format_timestamp(obj)
    raise TypeError(f"Cannot store a {type(obj).__name__} in an event.")


@dataclass(frozen=True)
class StoreSettings:
    """Where the events and read models live."""

    kind: str  # "sqlite" | "postgres"
    sqlite_path: str | None = None
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    pg_dbname: str = "postgres"
    pg_schema: str = "public"
    pool_size: int = 8
    # An outage must answer in seconds, not hang requests: how long to wait for a pooled
    # connection, to open a new one, for one statement, and for a lock (SQLite: a busy file).
    pool_timeout: float = 2.0
    connect_timeout: float = 2.0
    statement_timeout: float = 5.0
    lock_timeout: float = 5.0

    @classmethod
    def from_url(cls, url: str) -> StoreSettings:
        """Parse `sqlite:///relative.db`, `sqlite:////abs/path.db` or `postgresql://…[?schema=]`."""
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
            if not path or path == ":memory:":
                raise ValueError("SQLite needs a file path: sqlite:///path/to/file.db")
            return cls(kind="sqlite", sqlite_path=path)
        if parts.scheme in ("postgresql", "postgres"):
            query = parse_qs(parts.query)
            schema = query.get("schema", ["public"])[0]
            if not _SCHEMA_NAME.match(schema):
                raise ValueError(f"Bad schema name {schema!r}.")
            return cls(
                kind="postgres",
                pg_host=parts.hostname or "127.0.0.1",
                pg_port=parts.port or 5432,
                pg_user=unquote(parts.username or "postgres"),
                pg_password=unquote(parts.password or ""),
                pg_dbname=unquote(parts.path.lstrip("/")) or "postgres",
                pg_schema=schema,
            )
        raise ValueError(f"Unsupported database URL {url!r}: use sqlite:/// or postgresql://")

    @property
    def pg_conninfo(self) -> str:
        """A libpq connection string for psycopg."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.pg_host,
            port=self.pg_port,
            user=self.pg_user,
            password=self.pg_password or None,
            dbname=self.pg_dbname,
        )

    def eventsourcing_env(self) -> dict[str, str]:
        """The settings the eventsourcing Application reads."""
        env = {
            "CREATE_TABLE": "y",
            "TRANSCODER_TOPIC": "adapters.store:OrjsonTranscoder",
            "MAPPER_TOPIC": "adapters.store:LeanMapper",
            "AGGREGATE_CACHE_MAXSIZE": "2000",
            "AGGREGATE_CACHE_FASTFORWARD": "y",
        }
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            Path(self.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            env.update(
                PERSISTENCE_MODULE="eventsourcing.sqlite",
                APPLICATION_RECORDER_TOPIC="adapters.sqliterecorder:ReceiptSQLiteApplicationRecorder",
                SQLITE_DBNAME=self.sqlite_path,
            )
            env["SQLITE_LOCK_TIMEOUT"] = str(_whole_seconds(self.lock_timeout))
        else:
            env.update(
                PERSISTENCE_MODULE="eventsourcing.postgres",
                APPLICATION_RECORDER_TOPIC="adapters.pgrecorder:FastPostgresApplicationRecorder",
                POSTGRES_DBNAME=self.pg_dbname,
                POSTGRES_HOST=self.pg_host,
                POSTGRES_PORT=str(self.pg_port),
                POSTGRES_USER=self.pg_user,
                POSTGRES_PASSWORD=self.pg_password,
                POSTGRES_SCHEMA=self.pg_schema,
                POSTGRES_POOL_SIZE=str(self.pool_size),
                POSTGRES_MAX_OVERFLOW="8",
                POSTGRES_LOCK_TIMEOUT=str(_whole_seconds(self.lock_timeout)),
                POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT="10",
                # The library's pool timeout (whole seconds here; the exact value, and the
                # rest of its outage settings, are set by adapters.outage.guard_event_store).
                POSTGRES_CONNECT_TIMEOUT=str(_whole_seconds(self.pool_timeout)),
            )
        return env

    def describe(self) -> str:
        """A human description without the password."""
        if self.kind == "sqlite":
            return f"sqlite file {self.sqlite_path}"
        where = f"{self.pg_user}@{self.pg_host}:{self.pg_port}/{self.pg_dbname}"
        return f"postgres {where} schema {self.pg_schema}"


def events_channel(schema: str, table: str) -> str:
    """The PostgreSQL NOTIFY channel of one events table: named by its schema too, since
    channels are per database, so that stores in other schemas of the same database (other
    deployments, test runs) never wake this one's listeners. At most 63 bytes, as
    PostgreSQL's identifiers."""
    name = f"{schema}.{table}".replace('"', "")
    if len(name.encode()) <= 63:
        return name
    return f"runledger_{hashlib.sha256(name.encode()).hexdigest()[:32]}"
