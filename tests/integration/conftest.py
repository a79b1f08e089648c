"""Runtimes for the integration tests: one per test, and a second one as another process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import open_runtime


@pytest.fixture
def runtime(store_url: str, tmp_path: Path) -> Iterator[Any]:
    """An in-process runtime on a fresh database of each store."""
    rt = open_runtime(store_url, tmp_path)
    yield rt
    rt.close()


@pytest.fixture
def second_runtime(store_url: str, tmp_path: Path) -> Iterator[Any]:
    """Another process's runtime on the same database."""
    rt = open_runtime(store_url, tmp_path)
    yield rt
    rt.close()
