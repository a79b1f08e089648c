"""docs/audit.md's worked example, recomputed with rfc8785 and hashlib alone (not the
project's hashing code): each canonical line the page shows hashes to the hash it shows,
links to the one before, and the three leaves give the root it shows."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import rfc8785

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def example() -> tuple[list[str], list[str], str]:
    """The canonical lines, hashes and root hex of the worked example."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A worked example") : text.index("## The global Merkle log")]
    lines = re.findall(r"```\n(\{.*\})\n```", section)
    hashes = re.findall(r"`hash` = `([0-9a-f]{64})`", section)
    root = re.search(r"root\s+`([0-9a-f]{64})`", section)
    assert root is not None
    return lines, hashes, root.group(1)


def test_the_documented_example_hashes_to_the_documented_hashes() -> None:
    lines, hashes, _ = example()
    assert len(lines) == len(hashes) == 3
    prev = "0" * 64
    for line, digest in zip(lines, hashes, strict=True):
        envelope = json.loads(line)
        assert rfc8785.dumps(envelope) == line.encode()  # the line is canonical
        assert envelope["prev_hash"] == prev
        assert hashlib.sha256(line.encode()).hexdigest() == digest
        prev = digest


def test_the_documented_root_is_the_three_leaves_merkle_root() -> None:
    _, hashes, root = example()

    def leaf(h: str) -> bytes:
        return hashlib.sha256(b"\x00" + bytes.fromhex(h)).digest()

    def node(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + left + right).digest()

    a, b, c = (leaf(h) for h in hashes)
    assert node(node(a, b), c).hex() == root
