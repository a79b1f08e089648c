"""The layers, checked on the source: imports run one way (api/http → api/service →
projections, adapters → domain), the domain does no I/O, and modules stay small.

Every import statement counts, also one inside a function or under TYPE_CHECKING: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "projections", "adapters", "api")
MAX_LINES = 400
# Modules allowed over MAX_LINES, each with its reason. Empty today: keep it that way.
TOO_LONG_ON_PURPOSE: dict[str, str] = {}

# What the domain may not import: other layers, and anything that does I/O, reads the
# clock or makes randomness (ids and times come in from the caller). The eventsourcing
# library's domain module is allowed; its application and storage modules are not.
DOMAIN_FORBIDS = (
    "api",
    "adapters",
    "projections",
    "sqlite3",
    "psycopg",
    "psycopg_pool",
    "starlette",
    "sse_starlette",
    "httpx",
    "httpx_sse",
    "uvicorn",
    "subprocess",
    "socket",
    "os",
    "pathlib",
    "shutil",
    "threading",
    "asyncio",
    "time",
    "random",
    "urllib",
    "http",
    "eventsourcing.application",
    "eventsourcing.persistence",
    "eventsourcing.postgres",
    "eventsourcing.sqlite",
    "eventsourcing.projection",
    "eventsourcing.system",
)


def modules(*packages: str) -> Iterator[Path]:
    """Every Python module under the given top-level packages."""
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def name_of(path: Path) -> str:
    """A module's path relative to the project (`domain/runs/aggregate.py`)."""
    return path.relative_to(ROOT).as_posix()


def imported(path: Path) -> set[str]:
    """The absolute names a module imports (relative imports resolved to their package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def within(name: str, prefix: str) -> bool:
    """True when `name` is the module `prefix` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def offences(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """`module imports name` for every forbidden import in the given packages."""
    found = []
    for path in modules(*packages):
        for name in sorted(imported(path)):
            if any(within(name, prefix) for prefix in forbidden):
                found.append(f"{name_of(path)} imports {name}")
    return found


def test_the_domain_imports_no_other_layer_and_nothing_that_does_io() -> None:
    assert offences(("domain",), DOMAIN_FORBIDS) == []


def test_projections_and_adapters_import_nothing_from_the_api() -> None:
    assert offences(("projections", "adapters"), ("api",)) == []


def test_adapters_import_nothing_from_the_projections() -> None:
    assert offences(("adapters",), ("projections",)) == []


def test_the_application_layer_imports_nothing_from_the_http_face() -> None:
    assert offences(("api/service",), ("api.http",)) == []


def test_no_module_outside_tests_and_scripts_is_over_four_hundred_lines() -> None:
    too_long = {
        name_of(path): lines
        for path in modules(*PACKAGES)
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert {name: n for name, n in too_long.items() if name not in TOO_LONG_ON_PURPOSE} == {}


def test_every_module_allowed_to_be_long_still_exists_and_still_needs_it() -> None:
    for name in TOO_LONG_ON_PURPOSE:
        path = ROOT / name
        assert path.exists(), name
        assert len(path.read_text().splitlines()) > MAX_LINES, name
