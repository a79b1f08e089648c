"""Decoding stored events, per event, in-process: this checkout against a base checkout.

    .venv/bin/python scripts/bench_decode.py --base /tmp/wire-base [--events 5000] [--repeats 7]
        [--rounds 3]

Every stream, event list and projection decodes stored rows; runner output (`tool.output`,
`log`) is most of them. For each code (the `--base` checkout, then this one), in a fresh
interpreter, on the same stored rows (a claimed run with `--events` runner outputs of ~100
bytes), it times, best of `--repeats` in each of `--rounds` interpreters per side (the two
sides alternating), in CPU ns per event:

- `orjson.loads`: the floor, the stored state parsed and nothing else;
- `Envelope.from_row`: a stored row to the client's envelope;
- `from_row + sse`: that and its SSE frame, a stream's whole work per event;
- `Folder.fold`: a stored row applied to its aggregate (the runs read model);
- `mapper.to_domain_event`: the repository's way (`GET /api/runs/{id}?at_sequence=`).

Without `--base` it measures this checkout only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

HERE = Path(__file__).resolve().parent.parent
CASES = (
    "orjson.loads",
    "Envelope.from_row",
    "from_row + sse",
    "Folder.fold",
    "mapper.to_domain_event",
)


def stored_rows(events: int) -> list[Any]:
    """A submitted, claimed run with `events` runner outputs, as stored rows."""
    from adapters.db import StoredRow
    from adapters.store import LeanMapper, OrjsonTranscoder
    from domain.runs import Run

    now = datetime(2026, 12, 1, tzinfo=UTC)
    run = Run.submit(run_id=uuid4(), owner="alice", task="t", now=now)
    later = (now + timedelta(seconds=30)).isoformat()
    run.claim(runner_id="r", lease_id="l", lease_expires_at=later, now=now)
    outputs = [
        ("tool.output" if i % 2 else "log", {"line": i, "text": "x" * 80}) for i in range(events)
    ]
    for start in range(0, events, 500):
        run.record_output(fencing_token=1, events=outputs[start : start + 500], actor="r", now=now)
    mapper = LeanMapper(transcoder=OrjsonTranscoder())
    stored = [mapper.to_stored_event(e) for e in run.collect_events()]
    return [
        StoredRow(i + 1, s.originator_id, s.originator_version, s.topic, s.state)
        for i, s in enumerate(stored)
    ]


def best_ns(work: Any, count: int, repeats: int) -> float:
    """The fastest of `repeats` calls of work(), in CPU ns per event (the machine may be
    shared), the collector off while timed (its pauses depend on the heap, not the work)."""
    times = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.thread_time_ns()
            work()
            times.append(time.thread_time_ns() - start)
        finally:
            gc.enable()
    return min(times) / count


def measure(events: int, repeats: int) -> dict[str, float]:
    """Each case's ns per event, on this interpreter's checkout."""
    import orjson
    from eventsourcing.persistence import StoredEvent

    from adapters.store import LeanMapper, OrjsonTranscoder
    from api.envelopes import Envelope
    from projections.folding import Folder

    rows = stored_rows(events)
    outputs = rows[2:]
    mapper = LeanMapper(transcoder=OrjsonTranscoder())
    stored = [StoredEvent(r.run_id, r.sequence, r.topic, r.state) for r in rows]

    def fold() -> None:
        Folder(SimpleNamespace(mapper=mapper, repository=None)).fold(rows)  # type: ignore[arg-type]

    work = {
        "orjson.loads": lambda: [orjson.loads(r.state) for r in outputs],
        "Envelope.from_row": lambda: [Envelope.from_row(r) for r in outputs],
        "from_row + sse": lambda: [Envelope.from_row(r).sse(r.sequence) for r in outputs],
        "Folder.fold": fold,
        "mapper.to_domain_event": lambda: [mapper.to_domain_event(s) for s in stored],
    }
    return {case: best_ns(work[case], len(outputs), repeats) for case in CASES}


def run_in(root: Path, events: int, repeats: int) -> dict[str, float]:
    """`measure` in a fresh interpreter that imports the code of `root`."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure"]
    cmd += ["--events", str(events), "--repeats", str(repeats)]
    out = subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout))


def best_of(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Each case's smaller figure."""
    return {case: min(a.get(case, b[case]), b[case]) for case in b}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="interpreters per side")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        sys.path.insert(0, os.getcwd())
        print(json.dumps(measure(args.events, args.repeats)))
        return 0
    print(f"$ {' '.join(sys.argv)}")
    print(f"{args.events} runner outputs, best of {args.repeats} x {args.rounds}, ns per event")
    # Alternating interpreters (base, this, base, this …), each case's best kept: the
    # machine is shared, and a slow moment should not land on one side only.
    this: dict[str, float] = {}
    base: dict[str, float] | None = {} if args.base else None
    for _ in range(args.rounds):
        if base is not None:
            base = best_of(base, run_in(args.base.resolve(), args.events, args.repeats))
        this = best_of(this, run_in(HERE, args.events, args.repeats))
    print(f"{'case':<24}{'base':>10}{'this':>10}{'this/base':>11}")
    for case in CASES:
        if base is None:
            print(f"{case:<24}{'':>10}{this[case]:>10.0f}")
        else:
            ratio = this[case] / base[case]
            print(f"{case:<24}{base[case]:>10.0f}{this[case]:>10.0f}{ratio:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
