"""Test support: real databases and a real `runledger serve` process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve import ROOT, ServeProcess

PG_URL = os.environ.get("RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
KEYS = "ka=alice:user,kb=bob:user,kr=runner-1:runner,kr2=runner-2:runner"
ALICE, BOB, RUNNER, OTHER_RUNNER = "ka", "kb", "kr", "kr2"


def postgres_available() -> bool:
    """True when the test PostgreSQL answers; under CI=true its absence is a failure."""
    import psycopg

    from adapters.store import StoreSettings

    try:
        with psycopg.connect(StoreSettings.from_url(PG_URL).pg_conninfo, connect_timeout=3):
            return True
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {PG_URL}: {exc}")
        return False


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL pointing at a fresh schema, dropped afterwards."""
    import psycopg

    from adapters.store import StoreSettings

    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable (set RUNLEDGER_TEST_POSTGRES_URL)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}schema={schema}"
    finally:
        conninfo = StoreSettings.from_url(PG_URL).pg_conninfo
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def fresh_store(kind: str, directory: Path) -> Iterator[str]:
    """A fresh database URL of one kind: a SQLite file in `directory`, or a new schema on
    the real PostgreSQL (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'events.db'}"
    else:
        with postgres_schema() as url:
            yield url


class Server(ServeProcess):
    """`runledger serve` with the tests' keys and a short poll, restartable on its port."""

    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        super().__init__(
            database_url,
            {
                **os.environ,
                "RUNLEDGER_API_KEYS": KEYS,
                "RUNLEDGER_DATA_DIR": str(data_dir),
                "RUNLEDGER_POLL_INTERVAL": "0.05",
                **env,
            },
        )
        self.data_dir = data_dir

    def start(self, timeout: float = 30.0) -> Server:
        """Start and wait for the readiness line."""
        self.launch(timeout)
        return self

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM and wait; the exit code."""
        code = super().stop(grace)
        assert code is not None, "the server was never started"
        return code

    def client(self, key: str = ALICE, **kw: object) -> httpx.Client:
        """An HTTP client speaking with one key."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw
        )


def open_runtime(url: str, data_dir: Path, **config: Any) -> Any:
    """An in-process runtime on the given database, as one server process would build it."""
    from api.config import Config
    from api.service.runtime import Runtime

    return Runtime(Config(database_url=url, data_dir=data_dir, **config))


def runledger_process(
    env: dict[str, str], *argv: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`runledger ARGV` run to its end in a process of its own, from the checkout, with
    `env` as its whole environment and `stdin` as its input."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *argv],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_repo(path: Path) -> Path:
    """A git repository at `path` with one commit of app.py ("one/two/three") on main."""
    from adapters import git

    path.mkdir()
    git.git(path, "init", "--quiet", "--initial-branch=main")
    (path / "app.py").write_text("one\ntwo\nthree\n")
    git.commit_all(path, "initial")
    return path
