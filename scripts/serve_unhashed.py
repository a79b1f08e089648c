"""`runledger serve` without the hash chain and the Merkle log: bench_audit.py's "without
hashing" side, and nothing else (no setting of the server turns hashing off). With
`--keep-chain` first, only the Merkle log is off: bench_audit.py's "chain only" side, which
tells the chain's cost on the write path from the log's.

It patches, in this process only, `Chain.link` to give every event `(None, None)` (stored
like an event from before the chain); `Chain.knows` to say every stream's last hash is
known, so that a command takes the path it takes on a hashed server (decided on the event
loop, Engine.update_soon: without this no hash is ever remembered and every command would
go the other way, through a thread, which made this side a different server); and the log
writer so that it holds and appends nothing (it would wait forever at the first unhashed
event anyway). With `--keep-chain`, the log writer only. Then it runs `api.cli.main` with
the command line it was given:

    python scripts/serve_unhashed.py [--keep-chain] serve --port 8123 --database sqlite:///x.db
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.audit_writer import LogWriter  # noqa: E402
from adapters.chain import Chain  # noqa: E402
from api import cli  # noqa: E402


def unlinked(
    _chain: Chain, events: Sequence[Any], _states: Sequence[Any] | None = None
) -> list[tuple[None, None]]:
    """No hashes: each event is stored with NULL prev_hash and hash."""
    return [(None, None)] * len(events)


def knows_all(_chain: Chain, _aggregate_id: Any, _sequence: int) -> bool:
    """Every stream's last hash is "known": without a chain there is none to read, so a
    command takes the same path (Engine.update_soon's) as on a hashed server whose chain
    remembers the run's last hash."""
    return True


def holds_nothing(_writer: LogWriter, _after: int, _rows: Any) -> None:
    """The log writer's offer, keeping nothing (so the projections never hurry its loop)."""


def appends_nothing(_writer: LogWriter) -> None:
    """The log writer's tick, doing nothing and wanting no other."""


def main(argv: list[str]) -> int:
    """Patch, then serve."""
    keep_chain = bool(argv) and argv[0] == "--keep-chain"
    if keep_chain:
        argv = argv[1:]
    else:
        setattr(Chain, "link", unlinked)  # noqa: B010
        setattr(Chain, "knows", knows_all)  # noqa: B010
    setattr(LogWriter, "offer", holds_nothing)  # noqa: B010
    setattr(LogWriter, "tick", appends_nothing)  # noqa: B010
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
