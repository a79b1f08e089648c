"""Fixtures shared by every tier: the two stores, and a running server on each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Server, postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a new schema on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A real `runledger serve` on a free port, on each store."""
    srv = Server(store_url, tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.kill()
