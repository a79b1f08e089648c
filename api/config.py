"""Server configuration: flags, then RUNLEDGER_* environment variables, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BODY_LIMIT = 1024 * 1024


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
    retry_backoff: float = 2.0
    subscriber_buffer: int = 10_000
    max_streams_per_key: int = 100
    allowed_roots: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, database_url: str | None = None
    ) -> Config:
        """Read RUNLEDGER_* variables; `database_url` (the --database flag) wins."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("RUNLEDGER_DATA_DIR", ".runledger"))
        url = (
            database_url
            or env.get("RUNLEDGER_DATABASE_URL")
            or f"sqlite:///{data_dir / 'runledger.db'}"
        )
        poll = env.get("RUNLEDGER_POLL_INTERVAL")
        return cls(
            database_url=url,
            data_dir=data_dir,
            api_keys=env.get("RUNLEDGER_API_KEYS"),
            keys_file=env.get("RUNLEDGER_KEYS_FILE"),
            body_limit=int(env.get("RUNLEDGER_BODY_LIMIT", DEFAULT_BODY_LIMIT)),
            ping_interval=float(env.get("RUNLEDGER_PING_INTERVAL", 15)),
            poll_interval=float(poll) if poll else None,
            lease_seconds=float(env.get("RUNLEDGER_LEASE_SECONDS", 30)),
            retry_backoff=float(env.get("RUNLEDGER_RETRY_BACKOFF", 2)),
            allowed_roots=tuple(
                r for r in env.get("RUNLEDGER_ALLOWED_ROOTS", "").split(os.pathsep) if r
            ),
            subscriber_buffer=int(env.get("RUNLEDGER_SUBSCRIBER_BUFFER", 10_000)),
            max_streams_per_key=int(env.get("RUNLEDGER_MAX_STREAMS_PER_KEY", 100)),
        )
