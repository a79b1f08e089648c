"""Fixtures shared by every tier: the two stores, and a running server on each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Server, fresh_store

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a new schema on the real PostgreSQL."""
    with fresh_store(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each store in turn, for a module's shared scenes: each scene makes its own database
    of this kind with `fresh_store`."""
    return str(request.param)


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A real `runledger serve` on a free port, on each store."""
    srv = Server(store_url, tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.kill()
