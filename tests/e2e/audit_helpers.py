"""Helpers of the audit tests, independent of runledger's own audit code: RFC 9162 hashing
and proof checks written from the RFC, the signed note checked with `cryptography`, and
direct SQL on a store's events table (to tamper with it as an intruder would)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from adapters.db import Cursor, Database
from adapters.store import StoreSettings


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(entries: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1: the Merkle Tree Hash of a list of entries, by its recursion."""
    if not entries:
        return sha256(b"")
    if len(entries) == 1:
        return sha256(b"\x00" + entries[0])
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:]))


def verify_inclusion(entry: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, sha256(b"\x00" + entry)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step (m < n)."""
    if not proof:
        return False
    if m & (m - 1) == 0:
        proof = [old, *proof]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha256(b"\x01" + c + fr)
            sr = sha256(b"\x01" + c + sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha256(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == old and sr == new and sn == 0


def check_signed_note(note: str, key_name: str, public_key: bytes) -> tuple[str, int, bytes]:
    """The (origin, size, root) of a checkpoint once its Ed25519 signature line by
    `key_name` verifies over the text, checked with `cryptography` directly (c2sp.org
    signed-note: text, blank line, `— name base64(key id ‖ signature)`)."""
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    key_id = sha256(key_name.encode() + b"\n\x01" + public_key)[:4]
    lines = [line for line in signatures.split("\n") if line]
    ours = [line for line in lines if line.startswith(f"\u2014 {key_name} ")]
    assert ours, note
    for line in ours:
        blob = base64.b64decode(line.rsplit(" ", 1)[1], validate=True)
        assert blob[:4] == key_id
        Ed25519PublicKey.from_public_bytes(public_key).verify(blob[4:], text.encode())
    origin, size, root = text.rstrip("\n").split("\n")[:3]
    return origin, int(size), base64.b64decode(root, validate=True)


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def audit(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """A run's audit (200)."""
    answer = client.get(f"/api/runs/{run_id}/audit")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def covered_audit(client: httpx.Client, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The run's audit once a checkpoint covers its last event (the writer and the signing
    run in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        found = client.get(f"/api/runs/{run_id}/audit")
        if found.status_code == 200 and found.json()["inclusion"] is not None:
            return dict(found.json())
        assert time.monotonic() < deadline, f"no checkpoint covers {run_id}: {found.text}"
        time.sleep(0.05)


def checkpoint_covering(client: httpx.Client, size: int, timeout: float = 30.0) -> dict[str, Any]:
    """The latest checkpoint (JSON) once it covers at least `size` leaves."""
    deadline = time.monotonic() + timeout
    while True:
        found = client.get("/api/audit/checkpoint", headers={"Accept": "application/json"})
        if found.status_code == 200 and found.json()["tree_size"] >= size:
            return dict(found.json())
        assert time.monotonic() < deadline, found.text
        time.sleep(0.05)


@contextmanager
def events_table(url: str) -> Iterator[tuple[Database, str]]:
    """Direct access to a store's events table: (the database, the table's name)."""
    db = Database(StoreSettings.from_url(url))
    try:
        with db.reading() as cur:
            if db.postgres:
                row = cur.execute(
                    "SELECT table_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND column_name = 'prev_hash'"
                ).fetchone()
                assert row is not None
                table = f'"{db.settings.pg_schema}"."{row[0]}"'
            else:
                row = cur.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%prev_hash%'"
                ).fetchone()
                assert row is not None
                table = str(row[0])
        yield db, table
    finally:
        db.close()


def run_rows(cur: Cursor, db: Database, table: str, run_id: str) -> list[tuple[Any, ...]]:
    """(position, version, state, prev_hash, hash) of a run's events, by version."""
    from uuid import UUID

    key: Any = UUID(run_id) if db.postgres else UUID(run_id).hex
    return cur.execute(
        f"SELECT {db.position_column}, originator_version, state, prev_hash, hash FROM {table} "
        "WHERE originator_id = ? ORDER BY originator_version",
        (key,),
    ).fetchall()
