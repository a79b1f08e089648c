#!/usr/bin/env python3
"""A randomised kill loop of idempotent batches, on SQLite and PostgreSQL.

A runner posts batches of 5 events, each with its own Idempotency-Key, and retries each
until it is answered, while `runledger serve` is SIGKILLed and restarted at random moments.
Afterwards every batch must be stored exactly once, and every answer must name the batch's
last event. The same loop (tests/chaos.py) runs in the test suite at 10 kills and 500 batches.

    .venv/bin/python scripts/chaos_idempotency.py [--kills 20] [--batches 2000] [--seed 1]
        [--stores sqlite,postgres] [--pg-url URL]

Exit status 1 when a duplicate, a missing batch, a wrong answer or an error was found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchreport import DEFAULT_PG_URL, postgres_schema
from benchserver import RUNNER_KEY, USER_KEY, Server

from tests.chaos import kill_loop


def main() -> int:
    """Run the loop on each store and print what it found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args()
    failed = False
    print(f"kill loop: {args.batches} batches of 5 events, {args.kills} SIGKILLs, seed {args.seed}")
    print(
        f"{'store':<10} {'kills':>5} {'answered':>8} {'retries':>7} {'dup':>4} {'missing':>7} "
        f"{'wrong':>5} {'errors':>6} {'seconds':>7}"
    )
    for store in args.stores.split(","):
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            if store == "postgres":
                url = stack.enter_context(postgres_schema(args.pg_url))
            else:
                url = f"sqlite:///{tmp / 'events.db'}"
            server = Server(url, tmp / "data")
            server.start()
            stack.callback(server.kill)
            began = time.monotonic()
            found = kill_loop(
                server, USER_KEY, RUNNER_KEY, batches=args.batches, kills=args.kills, seed=args.seed
            )
            took = time.monotonic() - began
        print(
            f"{store:<10} {found.kills:>5} {found.answered:>8} {found.retries:>7} "
            f"{found.duplicates:>4} {found.missing:>7} {found.wrong_answers:>5} "
            f"{len(found.errors):>6} {took:>7.1f}"
        )
        for error in found.errors[:5]:
            print(f"  error: {error}")
        failed |= bool(found.duplicates or found.missing or found.wrong_answers or found.errors)
        failed |= found.answered != args.batches
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
