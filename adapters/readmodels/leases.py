"""The leases view: every current lease and its expiry (the lease-expiry policy's own state)."""

from __future__ import annotations

from adapters.db import Cursor

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS leases_view (
        run_id TEXT PRIMARY KEY,
        lease_id TEXT NOT NULL,
        fencing_token BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS leases_view_lease ON leases_view (lease_id)",
    "CREATE INDEX IF NOT EXISTS leases_view_expiry ON leases_view (expires_at)",
]


def upsert_lease(
    cur: Cursor, run_id: str, lease_id: str, fencing_token: int, expires_at: float
) -> None:
    """Record a run's current lease."""
    cur.execute(
        "INSERT INTO leases_view (run_id, lease_id, fencing_token, expires_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET lease_id = excluded.lease_id, "
        "fencing_token = excluded.fencing_token, expires_at = excluded.expires_at",
        (run_id, lease_id, fencing_token, expires_at),
    )


def renew_lease(cur: Cursor, run_id: str, lease_id: str, expires_at: float) -> None:
    """A heartbeat moved a lease's expiry."""
    cur.execute(
        "UPDATE leases_view SET expires_at = ? WHERE run_id = ? AND lease_id = ?",
        (expires_at, run_id, lease_id),
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


def next_lease_expiry(cur: Cursor) -> float | None:
    """The earliest lease expiry (epoch seconds), if any lease is held."""
    row = cur.execute("SELECT MIN(expires_at) FROM leases_view").fetchone()
    return float(row[0]) if row and row[0] is not None else None
