"""Signed checkpoints of the Merkle log (c2sp.org/tlog-checkpoint) and the key that signs them.

A checkpoint is a signed note (adapters/notes.py) whose text is exactly

    <origin>\\n<tree size, decimal>\\n<base64 root hash>\\n[<extension line>\\n ...]

signed with Ed25519 under a key whose name is the origin (`runledger/<server id>`).

The signing key is an Ed25519 private key: the operator's file (RUNLEDGER_SIGNING_KEY_FILE,
PEM PKCS#8 as `openssl genpkey -algorithm ed25519` writes it, or the note form
`PRIVATE+KEY+<name>+<id>+<base64>` of golang.org/x/mod/sumdb/note), else one generated on
first start as `signing-key.pem` in the data directory, mode 0600, and reused afterwards.
A key file that others (not the owner or its group) can read, or that the group can
write, is refused, as OpenSSH refuses an exposed private key.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.notes import (
    ED25519,
    MalformedKey,
    MalformedNote,
    NoteError,
    Verifier,
    b64decode,
    b64encode,
    check_characters,
    is_valid_name,
    key_id,
    open_note,
    public_bytes,
    sign_note,
    split_note,
)

__all__ = [
    "Checkpoint",
    "NoteError",
    "Signer",
    "SigningKeyError",
    "WrongOrigin",
    "load_or_create",
    "parse_body",
    "parse_checkpoint",
    "verify_note",
]

KEY_FILE_NAME = "signing-key.pem"
HASH_SIZE = 32  # an RFC 6962 root: SHA-256
MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_HEX_ID = re.compile(r"[0-9a-fA-F]{8}", re.ASCII)


class WrongOrigin(NoteError):
    """A well-signed checkpoint of another log than the one expected."""


class SigningKeyError(Exception):
    """The signing key file cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Checkpoint:
    """A log's state: its origin, the number of leaves and the Merkle root over them."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedNote(f"bad origin {self.origin!r}: empty or has a newline")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedNote(f"tree size {self.size!r} is not a 64-bit unsigned integer")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedNote(f"root hash is {len(self.root_hash)} bytes, not {HASH_SIZE}")
        for line in self.extensions:
            if not line or "\n" in line:
                raise MalformedNote(f"bad extension line {line!r}: empty or has a newline")
        check_characters(self.text())

    def text(self) -> str:
        """The note text that is signed: one line each, every line ending in a newline."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_body(text: str) -> Checkpoint:
    """A checkpoint from its note text (no signatures)."""
    if not text.endswith("\n"):
        raise MalformedNote("checkpoint text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNote(f"checkpoint has {len(lines)} lines, needs origin, size and hash")
    origin, size, root64, *extensions = lines
    if not _DECIMAL.fullmatch(size):
        raise MalformedNote(f"tree size {size!r} is not a decimal without leading zeros")
    try:
        root_hash = b64decode(root64)
    except ValueError as e:
        raise MalformedNote(f"root hash is {e}") from None
    if any(not line for line in extensions):
        raise MalformedNote("checkpoint has an empty line")
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def parse_checkpoint(note: str | bytes) -> Checkpoint:
    """The checkpoint in a signed note, WITHOUT checking its signatures (see verify_note)."""
    text, _ = split_note(note)
    return parse_body(text)


def verify_note(
    note: str | bytes,
    key: Verifier | str | bytes,
    name: str | None = None,
    *,
    origin: str | None = None,
) -> Checkpoint:
    """The checkpoint in a signed note, once signed by key and of the expected origin.

    key is a Verifier, a vkey string, or 32 raw public-key bytes with their key name. The
    origin expected is `origin`, by default the key's name (a log signs as its origin).
    Raises MalformedNote, UnknownKey, BadSignature or WrongOrigin, naming what is wrong.
    """
    verifier = _verifier(key, name)
    checkpoint = parse_body(open_note(note, verifier))
    expected = verifier.name if origin is None else origin
    if checkpoint.origin != expected:
        raise WrongOrigin(f"checkpoint of {checkpoint.origin!r}, expected {expected!r}")
    return checkpoint


def _verifier(key: Verifier | str | bytes, name: str | None) -> Verifier:
    if isinstance(key, Verifier):
        return key
    if isinstance(key, str):
        return Verifier.from_vkey(key)
    if name is None:
        raise MalformedKey("a raw public key needs its key name")
    return Verifier(name, bytes(key))


class Signer:
    """An Ed25519 private key under a key name: signs the log's checkpoints."""

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        if not is_valid_name(name):
            raise MalformedKey(f"bad key name {name!r}: empty, or has a space or '+'")
        self._private_key = private_key
        self.name = name
        self.public_key = public_bytes(private_key)
        self.verifier = Verifier(name, self.public_key)

    @property
    def key_id(self) -> int:
        """The 32-bit key id in signature lines and the vkey."""
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key to publish: `<name>+<hex key id>+<base64(0x01 ‖ public key)>`."""
        return self.verifier.vkey

    def sign(self, origin: str, size: int, root_hash: bytes, extensions: Sequence[str] = ()) -> str:
        """The signed note of a checkpoint; origin must be the key's name."""
        if origin != self.name:
            raise ValueError(f"this key signs as {self.name!r}, not as {origin!r}")
        checkpoint = Checkpoint(origin, size, bytes(root_hash), tuple(extensions))
        return self.sign_text(checkpoint.text())

    def sign_text(self, text: str) -> str:
        """The signed note of any text ending in a newline."""
        return sign_note(text, self.name, self._private_key)

    def private_key_pem(self) -> bytes:
        """The private key as unencrypted PEM PKCS#8 (what the key file holds)."""
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def load_or_create(data_dir: Path, key_file: Path | None, name: str) -> Signer:
    """The signer: from key_file if given, else the data directory's key, made on first use.

    Two processes starting at once end with the same key: each writes its candidate to a
    private temporary file and hard-links it into place, which fails if a key is there.
    """
    if key_file is not None:
        return Signer(_read_key_file(key_file, name), name)
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        _create_key_file(path, Ed25519PrivateKey.generate())
    return Signer(_read_key_file(path, name), name)


def _create_key_file(path: Path, private_key: Ed25519PrivateKey) -> None:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        # link, unlike rename, never replaces: a key another process put there first wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key_file(path: Path, name: str) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as e:
        raise SigningKeyError(f"cannot read signing key file {path}: {e.strerror}") from None
    if os.name == "posix" and mode & 0o027:
        raise SigningKeyError(
            f"signing key file {path} is open to others (mode {mode & 0o777:o}): anyone who "
            f"can read it can sign checkpoints in this server's name; run `chmod 600 {path}`"
        )
    if data.lstrip().startswith(b"PRIVATE+KEY+"):
        return _parse_note_private_key(data.decode("utf-8", "replace").strip(), name, path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningKeyError(
            f"signing key file {path} is encrypted; give an unencrypted PEM key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(
            f"signing key file {path} is neither a PEM private key nor PRIVATE+KEY+…; make "
            f"one with `openssl genpkey -algorithm ed25519 -out {path}`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"signing key file {path} holds a {type(key).__name__}, not Ed25519")
    return key


def _parse_note_private_key(text: str, name: str, path: Path) -> Ed25519PrivateKey:
    parts = text.split("+", 4)  # base64 may hold '+': the key is the rest
    if len(parts) != 5 or not _HEX_ID.fullmatch(parts[3]):
        raise SigningKeyError(f"signing key file {path}: expected PRIVATE+KEY+name+id+key")
    _, _, key_name, hex_id, key64 = parts
    try:
        raw = b64decode(key64)
        expected_id = int(hex_id, 16)
    except ValueError as e:
        raise SigningKeyError(f"signing key file {path}: bad key id or key ({e})") from None
    if len(raw) != 33 or raw[0] != ED25519:
        raise SigningKeyError(f"signing key file {path}: not an Ed25519 key (0x01 ‖ 32 bytes)")
    key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    if key_id(key_name, public_bytes(key)) != expected_id:
        raise SigningKeyError(f"signing key file {path}: key id does not match name and key")
    if key_name != name:
        raise SigningKeyError(
            f"signing key file {path} is named {key_name!r}, but this server signs as {name!r}"
        )
    return key
