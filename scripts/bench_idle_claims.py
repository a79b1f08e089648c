"""Server CPU while runners long-poll with nothing to claim: before vs after, in one run.

    .venv/bin/python scripts/bench_idle_claims.py --base /tmp/fuzzbase
    .venv/bin/python scripts/bench_idle_claims.py --base /tmp/fuzzbase --stores sqlite,postgres

`--base` is a checkout of the code to compare against (e.g. `git worktree add /tmp/fuzzbase
31b83c4`); the code under test is this checkout. For each store and each code: start
`runledger serve` on a fresh database, open N idle long-poll claims (`wait_seconds: 30`,
nothing pending), wait for them to settle, then read the server's CPU time (utime + stime
from /proc/<pid>/stat) over a fixed window. The server with no claims at all is measured
too, as the floor (its change feed and policies poll on their own).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serve import free_port  # noqa: E402

PG_URL = os.environ.get("RUNLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
RUNNER_KEY = "kr"
KEYS = f"ka=alice:user,{RUNNER_KEY}=runner-1:runner"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@contextmanager
def serve(root: Path, url: str, data_dir: Path, keys: str = KEYS) -> Iterator[tuple[int, int]]:
    """`runledger serve` from the code at `root`; yields (pid, port)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLEDGER_")}
    env.update(RUNLEDGER_API_KEYS=keys, RUNLEDGER_DATA_DIR=str(data_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--database", url],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "ready on" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(60):
            raise RuntimeError(f"the server from {root} did not start")
        yield proc.pid, port
    finally:
        proc.kill()
        proc.wait(10)


async def hold_claims(port: int, count: int, window: float, pid: int) -> tuple[float, int]:
    """Open `count` idle long-poll claims; (server CPU seconds over `window`, claims open)."""
    body = b'{"runner_id": "idle", "wait_seconds": 30}'
    request = (
        f"POST /api/runner/claim HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {RUNNER_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        writers.append(writer)
    await asyncio.sleep(3.0)  # every claim reached its wait
    start = cpu_seconds(pid)
    await asyncio.sleep(window)
    used = cpu_seconds(pid) - start
    open_claims = sum(not w.is_closing() for w in writers)
    for writer in writers:
        writer.close()
    return used, open_claims


@contextmanager
def database(store: str, tmp: Path) -> Iterator[str]:
    """A fresh database URL on `store`."""
    if store == "sqlite":
        yield f"sqlite:///{tmp / f'{uuid.uuid4().hex}.db'}"
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def measure(root: Path, store: str, claims: int, window: float) -> float:
    """Server CPU in % of one core over the window, with `claims` idle claims open."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(store, Path(tmp)) as url,
        serve(root, url, Path(tmp) / "data") as (pid, port),
    ):
        used, still_open = asyncio.run(hold_claims(port, claims, window, pid))
    if still_open != claims:
        print(f"  WARNING: only {still_open} of {claims} claims stayed open", flush=True)
    return 100 * used / window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="checkout to compare against")
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--stores", default="sqlite")
    args = parser.parse_args()
    print(f"$ {' '.join(sys.argv)}")
    print(f"nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, window {args.window:.0f} s")
    print(f"{'store':8} {'case':32} {'server CPU (% of one core)':>28}")
    for store in args.stores.split(","):
        rows = [
            ("no claims (this code)", ROOT, 0),
            (f"{args.claims} idle claims, before", args.base.resolve(), args.claims),
            (f"{args.claims} idle claims, after", ROOT, args.claims),
        ]
        for label, root, count in rows:
            started = time.monotonic()
            figure = measure(root, store, count, args.window)
            print(f"{store:8} {label:32} {figure:27.1f}%  ({time.monotonic() - started:.0f} s)")
    print(f"load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
