"""API keys: from RUNLEDGER_API_KEYS and/or a keys file; a generated one when none is set."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ROLES = ("user", "runner")


@dataclass(frozen=True)
class Principal:
    """Who a key speaks for."""

    name: str
    role: str


def parse_keys(text: str) -> dict[str, Principal]:
    """Parse `key=user:role` entries separated by commas or newlines (# starts a comment)."""
    keys: dict[str, Principal] = {}
    for raw in text.replace(",", "\n").splitlines():
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        key, sep, who = entry.partition("=")
        name, _, role = who.partition(":")
        key, name, role = key.strip(), name.strip(), (role.strip() or "user")
        if not sep or not key or not name or role not in ROLES:
            raise ValueError(f"Bad key entry {entry!r}: expected key=name:user|runner")
        keys[key] = Principal(name, role)
    return keys


class KeyRing:
    """Looks up keys in constant time per comparison."""

    def __init__(self, keys: dict[str, Principal]) -> None:
        self._keys = keys
        self._by_hash = {hashlib.sha256(k.encode()).hexdigest(): p for k, p in keys.items()}

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, presented: str) -> Principal | None:
        """The principal of a presented key, or None."""
        found = None
        for key, principal in self._keys.items():
            if hmac.compare_digest(key.encode(), presented.encode()):
                found = principal
        return found

    def find_hash(self, key_hash: str) -> Principal | None:
        """The principal of the key whose SHA-256 (hex) this is, or None (a session's key,
        which the server keeps only hashed)."""
        return self._by_hash.get(key_hash)


def load_keys(env_value: str | None, keys_file: str | None) -> dict[str, Principal]:
    """Keys from the environment variable and the keys file, merged."""
    keys = parse_keys(env_value or "")
    if keys_file:
        keys.update(parse_keys(Path(keys_file).read_text()))
    return keys


def generated_key(data_dir: Path) -> tuple[str, bool]:
    """The data directory's key for the user `local`, created on first use (mode 0600)."""
    path = data_dir / "api-key"
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "rl_" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, True
