"""Test support: real databases and a real `runledger serve` process on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
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


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`runledger serve` in a subprocess, restartable on the same port and database."""

    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "RUNLEDGER_API_KEYS": KEYS,
            "RUNLEDGER_DATA_DIR": str(data_dir),
            "RUNLEDGER_POLL_INTERVAL": "0.05",
            **env,
        }
        self.proc: subprocess.Popen[str] | None = None
        self._pump: threading.Thread | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        """Start and wait for the readiness line."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--port",
                str(self.port),
                "--database",
                self.database_url,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if "ready on" in line:
                    ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self._pump is not None:
            self._pump.join(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reap()
        return int(self.proc.returncode)

    def client(self, key: str = ALICE, **kw: object) -> httpx.Client:
        """An HTTP client speaking with one key."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kw
        )


def open_runtime(url: str, data_dir: Path, **config: Any) -> Any:
    """An in-process runtime on the given database, as one server process would build it."""
    from api.config import Config
    from api.runtime import Runtime

    return Runtime(Config(database_url=url, data_dir=data_dir, **config))


def make_repo(path: Path) -> Path:
    """A git repository at `path` with one commit of app.py ("one/two/three") on main."""
    from adapters import git

    path.mkdir()
    git.git(path, "init", "--quiet", "--initial-branch=main")
    (path / "app.py").write_text("one\ntwo\nthree\n")
    git.commit_all(path, "initial")
    return path
