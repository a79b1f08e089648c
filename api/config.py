"""Server configuration: flags, then RUNLEDGER_* environment variables, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from adapters.store import StoreSettings

DEFAULT_BODY_LIMIT = 1024 * 1024
ROLES = ("all", "api", "worker")
# The cyclic collector's thresholds for generations 0, 1 and 2: the interpreter's 700 for
# the young generation ran a collection every few commands, each tracing the objects of
# every command in flight, which then aged into the old generations and made their (long)
# collections frequent; docs/operations.md, "The garbage collector".
DEFAULT_GC_THRESHOLD = (2000, 10, 10)
GC_THRESHOLD_MAX = 2**31 - 1  # what gc.set_threshold takes (a C int)


@dataclass(frozen=True)
class Config:
    """Everything `runledger serve` can be told."""

    database_url: str
    data_dir: Path
    api_keys: str | None = None
    keys_file: str | None = None
    body_limit: int = DEFAULT_BODY_LIMIT
    ping_interval: float = 15.0
    poll_interval: float | None = None  # None: 0.1 s on SQLite, 1 s on PostgreSQL
    lease_seconds: float = 30.0
    # A claim its runner does not confirm (an event, a heartbeat, a report) within this
    # many seconds goes back to pending without using an attempt (run.claim_abandoned).
    claim_confirm_seconds: float = 10.0
    retry_backoff: float = 2.0
    subscriber_buffer: int = 10_000
    max_streams_per_key: int = 100
    allowed_roots: tuple[str, ...] = ()
    metrics_public: bool = False  # /metrics without a key (off: it needs a user key)
    role: str = "all"  # api: HTTP only; worker: projections and policies; all: both
    # Database outages answer 503 in seconds instead of hanging (see docs/operations.md).
    db_pool_timeout: float = 2.0
    db_connect_timeout: float = 2.0
    db_statement_timeout: float = 5.0
    db_lock_timeout: float = 5.0
    # The audit log's signed checkpoints (docs/audit.md): at least every N events or T
    # seconds when events arrived; the operator's Ed25519 key, else one in the data dir.
    checkpoint_events: int = 1000
    checkpoint_seconds: float = 10.0
    signing_key_file: Path | None = None
    # The operator's prices per model, for usage an agent reports without a cost.
    prices_file: Path | None = None
    # Browser sessions (POST /api/session) last this long; other origins allowed to call
    # the API with bearer keys (CORS: none by default).
    session_hours: float = 12.0
    cookie_secure: str = "auto"  # true, false, or auto: Secure unless on loopback over HTTP
    cors_origins: tuple[str, ...] = ()
    gc_threshold: tuple[int, int, int] = DEFAULT_GC_THRESHOLD  # gc.set_threshold

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        database_url: str | None = None,
        role: str | None = None,
    ) -> Config:
        """Read RUNLEDGER_* variables; `database_url` and `role` (the flags) win."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("RUNLEDGER_DATA_DIR", ".runledger"))
        url = (
            database_url
            or env.get("RUNLEDGER_DATABASE_URL")
            or f"sqlite:///{data_dir / 'runledger.db'}"
        )
        poll = env.get("RUNLEDGER_POLL_INTERVAL")
        key_file = env.get("RUNLEDGER_SIGNING_KEY_FILE")
        prices = env.get("RUNLEDGER_PRICES_FILE")
        return cls(
            database_url=url,
            data_dir=data_dir,
            api_keys=env.get("RUNLEDGER_API_KEYS"),
            keys_file=env.get("RUNLEDGER_KEYS_FILE"),
            body_limit=int(env.get("RUNLEDGER_BODY_LIMIT", DEFAULT_BODY_LIMIT)),
            ping_interval=float(env.get("RUNLEDGER_PING_INTERVAL", 15)),
            poll_interval=float(poll) if poll else None,
            lease_seconds=float(env.get("RUNLEDGER_LEASE_SECONDS", 30)),
            claim_confirm_seconds=float(env.get("RUNLEDGER_CLAIM_CONFIRM_SECONDS", 10)),
            retry_backoff=float(env.get("RUNLEDGER_RETRY_BACKOFF", 2)),
            allowed_roots=tuple(
                r for r in env.get("RUNLEDGER_ALLOWED_ROOTS", "").split(os.pathsep) if r
            ),
            subscriber_buffer=int(env.get("RUNLEDGER_SUBSCRIBER_BUFFER", 10_000)),
            max_streams_per_key=int(env.get("RUNLEDGER_MAX_STREAMS_PER_KEY", 100)),
            metrics_public=env.get("RUNLEDGER_METRICS_PUBLIC", "").lower() in ("true", "1"),
            role=role or env.get("RUNLEDGER_ROLE", "all"),
            db_pool_timeout=float(env.get("RUNLEDGER_DB_POOL_TIMEOUT", 2)),
            db_connect_timeout=float(env.get("RUNLEDGER_DB_CONNECT_TIMEOUT", 2)),
            db_statement_timeout=float(env.get("RUNLEDGER_DB_STATEMENT_TIMEOUT", 5)),
            db_lock_timeout=float(env.get("RUNLEDGER_DB_LOCK_TIMEOUT", 5)),
            checkpoint_events=int(env.get("RUNLEDGER_CHECKPOINT_EVENTS", 1000)),
            checkpoint_seconds=float(env.get("RUNLEDGER_CHECKPOINT_SECONDS", 10)),
            signing_key_file=Path(key_file) if key_file else None,
            prices_file=Path(prices) if prices else None,
            session_hours=float(env.get("RUNLEDGER_SESSION_HOURS", 12)),
            cookie_secure=env.get("RUNLEDGER_COOKIE_SECURE", "auto").strip().lower(),
            cors_origins=tuple(
                o.strip() for o in env.get("RUNLEDGER_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            gc_threshold=parse_gc_threshold(env.get("RUNLEDGER_GC_THRESHOLD", "")),
        )

    def store_settings(self) -> StoreSettings:
        """The database URL's settings, with the outage timeouts configured here."""
        return replace(
            StoreSettings.from_url(self.database_url),
            pool_timeout=self.db_pool_timeout,
            connect_timeout=self.db_connect_timeout,
            statement_timeout=self.db_statement_timeout,
            lock_timeout=self.db_lock_timeout,
        )


def parse_gc_threshold(text: str) -> tuple[int, int, int]:
    """`RUNLEDGER_GC_THRESHOLD`: one to three whole numbers, the collector's thresholds for
    generations 0, 1 and 2 (those left out keep the default's); empty: the default."""
    if not text.strip():
        return DEFAULT_GC_THRESHOLD
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 3 or not all(p.isascii() and p.isdecimal() for p in parts):
        raise ValueError(
            f"RUNLEDGER_GC_THRESHOLD wants one to three whole numbers, comma-separated "
            f"(such as 700,10,10); not {text!r}"
        )
    given = [int(p) for p in parts]
    if any(n > GC_THRESHOLD_MAX for n in given):
        raise ValueError(f"RUNLEDGER_GC_THRESHOLD wants numbers up to {GC_THRESHOLD_MAX}")
    first, second, third = (*given, *DEFAULT_GC_THRESHOLD[len(given) :])
    return first, second, third
