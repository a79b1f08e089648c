"""Outside clients the end-to-end tests drive: the npm `eventsource` package under Node, and
Debian's Chromium. Missing on a developer's machine, their tests are skipped; with
CI=true, a missing one fails (`.ci/run` installs Chromium; Node and npm come with the
machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_CLIENT = Path(__file__).parent / "node"
CHROMIUM = os.environ.get("RUNLEDGER_TEST_CHROMIUM", "/usr/bin/chromium")
# What Chromium needs here: no sandbox as root, and no calls home (this machine's closed
# network refuses them, many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(what: str) -> None:
    """Skip, or under CI=true fail: a tool the test needs is not installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {what} is missing")
    pytest.skip(f"{what} is missing")


def node_client(workdir: Path) -> Path:
    """A copy of tests/e2e/node with its locked packages installed (`npm ci`)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("Node.js with npm")
    target = workdir / "node-client"
    shutil.copytree(NODE_CLIENT, target, ignore=shutil.ignore_patterns("node_modules"))
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm ci failed: {done.stdout}\n{done.stderr}"
    return target


def chromium() -> str:
    """The path of the machine's Chromium."""
    if not Path(CHROMIUM).exists():
        missing(f"Chromium ({CHROMIUM}; Debian's package `chromium`)")
    return CHROMIUM


def launch_chromium(playwright: Any) -> Any:
    """Headless Chromium (the machine's, not a Playwright download) under Playwright."""
    return playwright.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
