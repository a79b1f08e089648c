"""The machine facts a benchmark report's header gives: the command, the served code, the
machine, the library versions, SQLite and PostgreSQL (scripts/benchreport.py prints them)."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def filesystem_of(path: Path) -> str:
    """The filesystem type holding a path (from /proc/mounts)."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def code_state(root: Path) -> str:
    """The git commit the server runs, which tracked files differ from it, and where (as the
    server's interpreter, run in `root` the same way, finds it) `api.cli` is imported from."""
    try:
        head = subprocess.run(
            ["git", "log", "-1", "--format=%h %s"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "diff", "--name-only", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.split()
        served = subprocess.run(
            [sys.executable, "-c", "import api.cli; print(api.cli.__file__)"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError as exc:
        return f"unknown ({exc})"
    dirty = f"; uncommitted changes in {', '.join(changed)}" if changed else "; clean"
    return f"{head[:90]}{dirty}; serves {served or 'nothing: api.cli did not import'}"


def cpu_model() -> str:
    """The CPU model name, when Linux says."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def postgres_facts(pg_url: str, shown: tuple[str, ...]) -> str:
    """Server version and the `shown` settings (e.g. durability) of the PostgreSQL at pg_url."""
    import psycopg

    from adapters.store import StoreSettings

    settings = StoreSettings.from_url(pg_url)
    names = ("server_version", *shown)
    with psycopg.connect(settings.pg_conninfo, connect_timeout=5) as conn:
        values = [str((conn.execute(f"SHOW {name}").fetchone() or ("?",))[0]) for name in names]
    where = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_dbname}"
    settings_text = ", ".join(f"{k}={v}" for k, v in zip(names[1:], values[1:], strict=True))
    return f"PostgreSQL {values[0]} at {where} ({settings_text})"


def machine_facts(
    tmp: Path, pg_url: str, packages: tuple[str, ...], pg_shown: tuple[str, ...], code: Path | None
) -> list[str]:
    """Header lines: command, cwd, [the served code,] machine, versions, SQLite and PostgreSQL."""
    facts = [
        f"command:  {shlex.join([sys.executable, *sys.argv])}",
        f"cwd:      {Path.cwd()}",
        *([f"code:     {code_state(code)}"] if code else []),
        f"machine:  nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
        f"{cpu_model()}, {platform.system()} {platform.release()} {platform.machine()}",
        f"python:   {platform.python_implementation()} {platform.python_version()}; "
        + ", ".join(f"{p} {metadata.version(p)}" for p in packages),
        f"sqlite:   {sqlite3.sqlite_version} (stdlib); files in {tmp} ({filesystem_of(tmp)})",
    ]
    try:
        facts.append(f"postgres: {postgres_facts(pg_url, pg_shown)}")
    except Exception as exc:
        facts.append(f"postgres: unreachable at {pg_url}: {exc}")
    return facts
