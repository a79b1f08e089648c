"""The leases view: every current lease, its holder, its expiry and, while its runner has
not confirmed the claim, the time by which it must (the lease-expiry policy's own state,
and `GET /api/runners`)."""

from __future__ import annotations

from typing import Any

from adapters.db import Cursor, in_lists

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS leases_view (
        run_id TEXT PRIMARY KEY,
        lease_id TEXT NOT NULL,
        fencing_token BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        runner TEXT NOT NULL,
        runner_id TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        last_heartbeat_at TEXT,
        lease_expires_at TEXT NOT NULL,
        confirm_by DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS leases_view_lease ON leases_view (lease_id)",
    "CREATE INDEX IF NOT EXISTS leases_view_expiry ON leases_view (expires_at)",
    "CREATE INDEX IF NOT EXISTS leases_view_confirm ON leases_view (confirm_by)",
]


def upsert_lease(cur: Cursor, run_id: str, lease: dict[str, Any]) -> None:
    """Record a run's new lease: `lease` has lease_id, fencing_token, expires_at (epoch s),
    runner, runner_id, claimed_at, lease_expires_at (timestamps) and confirm_by (epoch s,
    None when the claim needs no confirming)."""
    cur.execute(
        "INSERT INTO leases_view (run_id, lease_id, fencing_token, expires_at, runner, "
        "runner_id, claimed_at, last_heartbeat_at, lease_expires_at, confirm_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
        "lease_id = excluded.lease_id, fencing_token = excluded.fencing_token, "
        "expires_at = excluded.expires_at, runner = excluded.runner, "
        "runner_id = excluded.runner_id, claimed_at = excluded.claimed_at, "
        "last_heartbeat_at = NULL, lease_expires_at = excluded.lease_expires_at, "
        "confirm_by = excluded.confirm_by",
        (
            run_id,
            lease["lease_id"],
            lease["fencing_token"],
            lease["expires_at"],
            lease["runner"],
            lease["runner_id"],
            lease["claimed_at"],
            lease["lease_expires_at"],
            lease["confirm_by"],
        ),
    )


def renew_lease(
    cur: Cursor, run_id: str, lease_id: str, expires_at: float, renewed_at: str, expiry: str
) -> None:
    """A heartbeat moved a lease's expiry (and confirmed its claim)."""
    cur.execute(
        "UPDATE leases_view SET expires_at = ?, lease_expires_at = ?, last_heartbeat_at = ?, "
        "confirm_by = NULL WHERE run_id = ? AND lease_id = ?",
        (expires_at, expiry, renewed_at, run_id, lease_id),
    )


def confirm_leases(cur: Cursor, run_ids: list[str]) -> None:
    """The runners of these runs spoke: their claims need no confirming any more."""
    for chunk, marks in in_lists(run_ids):
        cur.execute(
            "UPDATE leases_view SET confirm_by = NULL "
            f"WHERE run_id IN ({marks}) AND confirm_by IS NOT NULL",
            chunk,
        )


def delete_lease(cur: Cursor, run_id: str) -> None:
    """A run no longer holds a lease."""
    cur.execute("DELETE FROM leases_view WHERE run_id = ?", (run_id,))


def run_of_lease(cur: Cursor, lease_id: str) -> str | None:
    """The run holding a lease id, if the lease is current."""
    row = cur.execute("SELECT run_id FROM leases_view WHERE lease_id = ?", (lease_id,)).fetchone()
    return row[0] if row else None


def expired_leases(cur: Cursor, now: float, limit: int = 100) -> list[tuple[str, int]]:
    """(run_id, fencing_token) of leases past their expiry."""
    rows = cur.execute(
        "SELECT run_id, fencing_token FROM leases_view WHERE expires_at <= ? "
        "ORDER BY expires_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def unconfirmed_claims(cur: Cursor, now: float, limit: int = 100) -> list[tuple[str, int]]:
    """(run_id, fencing_token) of claims past their confirm time, not confirmed."""
    rows = cur.execute(
        "SELECT run_id, fencing_token FROM leases_view WHERE confirm_by <= ? "
        "ORDER BY confirm_by LIMIT ?",
        (now, limit),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def next_lease_deadline(cur: Cursor) -> float | None:
    """The earliest lease expiry or confirm time (epoch seconds), if any lease is held."""
    row = cur.execute("SELECT MIN(expires_at), MIN(confirm_by) FROM leases_view").fetchone()
    found = [float(v) for v in (row or ()) if v is not None]
    return min(found) if found else None


def runner_leases(cur: Cursor, owner: str, limit: int) -> list[dict[str, Any]]:
    """The leases held on `owner`'s runs, oldest claim first: who holds each, since when,
    the last heartbeat, the expiry."""
    rows = cur.execute(
        "SELECT l.runner, l.runner_id, l.run_id, l.lease_id, l.claimed_at, "
        "l.last_heartbeat_at, l.lease_expires_at FROM leases_view l "
        "JOIN runs_view r ON r.run_id = l.run_id WHERE r.owner = ? "
        "ORDER BY l.claimed_at, l.run_id LIMIT ?",
        (owner, limit),
    ).fetchall()
    keys = (
        "runner",
        "runner_id",
        "run_id",
        "lease_id",
        "claimed_at",
        "last_heartbeat_at",
        "lease_expires_at",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]
