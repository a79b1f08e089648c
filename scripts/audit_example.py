"""Print docs/audit.md's worked example: a three-event run history, each event's envelope
as recorded, its RFC 8785 bytes and its hash, computed by runledger's own chain code.

    .venv/bin/python scripts/audit_example.py

tests/unit/test_audit_example.py recomputes the same hashes independently (rfc8785 and
hashlib only) from the values this prints, so the documentation cannot drift.
"""

from __future__ import annotations

import base64
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent

from adapters import merkle
from adapters.chain import Chain, canonical, recorded_envelope

RUN_ID = UUID("0b9a3c1e-5f6d-4e2a-9b8c-7d6e5f4a3b2c")
EVENTS = [
    (
        "runledger:run.submitted",
        {
            "timestamp": "2026-12-02T12:00:00.000000Z",
            "actor": "alice",
            "owner": "alice",
            "task": "Fix the login bug",
        },
    ),
    (
        "runledger:run.claimed",
        {
            "timestamp": "2026-12-02T12:00:01.250000Z",
            "actor": "runner",
            "runner_id": "r1",
            "attempt": 1,
        },
    ),
    (
        "runledger:run.completed",
        {"timestamp": "2026-12-02T12:03:00.000000Z", "actor": "runner", "summary": "Fixed ✓"},
    ),
]


def main() -> None:
    stored = [
        StoredEvent(RUN_ID, version, topic, orjson.dumps(state))
        for version, (topic, state) in enumerate(EVENTS, start=1)
    ]
    links = Chain(lambda *_: None).link(stored)
    for event, (prev, digest) in zip(stored, links, strict=True):
        envelope = recorded_envelope(
            RUN_ID, event.originator_version, event.topic, event.state, prev
        )
        print(f"sequence {event.originator_version}")
        print("canonical:", canonical(envelope).decode())
        print("hash:     ", digest.hex())
        print()
    leaves = [digest for _, digest in links]
    print("leaf hashes:", [merkle.leaf_hash(leaf).hex() for leaf in leaves])
    root = merkle.mth(leaves)
    print("root (tree size 3):", root.hex(), base64.b64encode(root).decode())


if __name__ == "__main__":
    main()
