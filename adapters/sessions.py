"""Browser sessions: a random token in an HttpOnly cookie stands for the user key it was
made from, until it expires or is ended (API.md, "Authentication and ownership").

Stored in the database, not in the process, so that every server process on one database
knows every session and an ended one is ended everywhere at once. Only hashes are stored:
the token's (a leaked table opens no session) and the key's (the session lasts only while
its key is still configured: removing the key ends its sessions too).
Not a read model: a read-model layout change never drops this table.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters.db import Cursor, Database
from adapters.keys import KeyRing, Principal

TABLE = """CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
)"""


def digest(secret: str) -> str:
    """The stored form of a token or a key: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_table(cur: Cursor) -> None:
    """Create the sessions table; safe to repeat."""
    cur.execute(TABLE)


@dataclass(frozen=True)
class Session:
    """A live session: who it speaks for, and the key it came from (by hash)."""

    principal: Principal
    key_hash: str


class Sessions:
    """Makes, finds and ends sessions."""

    def __init__(self, db: Database, keys: KeyRing, clock: Callable[[], float] = time.time) -> None:
        self.db, self.keys, self.clock = db, keys, clock

    def start(self, key: str, hours: float) -> str:
        """A new session for a key (checked by the caller); its token, for the cookie.
        Expired sessions are swept on the way."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            cur.execute(
                "INSERT INTO sessions (token_hash, key_hash, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (digest(token), digest(key), now, now + hours * 3600),
            )
        return token

    def find(self, token: str) -> Session | None:
        """The live session of a cookie's token: None when unknown, expired, ended, or
        its key is no longer configured."""
        if not token or len(token) > 200:
            return None
        with self.db.reading() as cur:
            row = cur.execute(
                "SELECT key_hash, expires_at FROM sessions WHERE token_hash = ?",
                (digest(token),),
            ).fetchone()
        if row is None or float(row[1]) <= self.clock():
            return None
        principal = self.keys.find_hash(str(row[0]))
        if principal is None or principal.role != "user":  # gone, or no longer a user's
            return None
        return Session(principal, str(row[0]))

    def end(self, token: str) -> None:
        """End a session (nothing happens for an unknown one)."""
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM sessions WHERE token_hash = ?", (digest(token),))
