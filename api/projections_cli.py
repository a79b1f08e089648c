"""`runledger projections …`: rebuild read models beside the live ones, and their status.

    runledger projections rebuild [NAME]     fresh tables, swapped in in one transaction
    runledger projections status [--json]    each read model's position and lag, the Merkle log's

Both work with the server running (another process, on the same database) or stopped.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from api.config import Config

NAMES = "runs, projects, leases, owners, board"


def add_parser(commands: Any) -> None:
    """Register `projections` on the `runledger` command's subparsers."""
    parser = commands.add_parser("projections", help="manage read models")
    actions = parser.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser(
        "rebuild", help="rebuild read models from the log beside the live ones, then swap"
    )
    rebuild.add_argument("name", nargs="?", metavar="NAME", help=f"one of {NAMES} (default: all)")
    rebuild.add_argument("--database")
    status = actions.add_parser("status", help="each read model's position and lag")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.add_argument("--database")


def run(args: argparse.Namespace, config: Config, fail: Callable[[str], None]) -> int:
    """Do `projections rebuild` or `projections status` (`fail` reports a usage error)."""
    from api.service.runtime import Runtime
    from projections.rebuilding import status

    runtime = Runtime(replace(config))
    try:
        if args.action == "rebuild":
            names = [args.name] if args.name else []
            try:
                projections = runtime.new_projections(names)
            except ValueError as exc:
                fail(f"{exc}; the read models are {NAMES}")
                return 2
            position = runtime.rebuild([p.name for p in projections])
            which = args.name or "read models"
            print(f"runledger: {which} rebuilt up to position {position} and swapped in")
            return 0
        head, found = status(runtime.db, [p.name for p in runtime.projection.projections])
    finally:
        runtime.close()
    if args.json:
        print(json.dumps({"head": head, "read_models": [asdict(s) for s in found]}, indent=2))
        return 0
    print(f"{'read model':<12} {'position':>10} {'lag':>8} {'size':>8}")
    for s in found:
        if s.position is None:
            print(f"{s.name:<12} {'not started':>10}")
            continue
        size = "" if s.size is None else str(s.size)
        print(f"{s.name:<12} {s.position:>10} {s.lag:>8} {size:>8}")
    print(f"{'(log head)':<12} {head:>10}")
    return 0
