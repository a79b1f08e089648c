"""Signed notes (c2sp.org/signed-note, golang.org/x/mod/sumdb/note) with Ed25519 keys.

A signed note is a text ending in a newline, a blank line, then one or more signature
lines `— <key name> <base64(4-byte key id ‖ signature)>`. The signature covers the text's
UTF-8 bytes exactly, final newline included, separating blank line excluded. A key is
known by the pair (name, key id), key id = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4];
its verifier key ("vkey") reads `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.

Stricter than the Go reference in two places, both documented in docs/audit.md: every
signature line from the expected key must verify (the spec's MUST; Go checks only the
first of duplicates), and base64 must be canonical (padding bits zero), so that no changed
character of a signature line still verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ED25519 = 0x01  # the signature type byte of Ed25519 in c2sp.org/signed-note
MAX_SIGNATURES = 100  # the spec asks for at least 16; Go's reference stops at 100
_DASH = "\u2014 "  # em dash, space
# Unicode White_Space: what Go's unicode.IsSpace rejects in a key name.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class NoteError(ValueError):
    """A note, key or checkpoint that cannot be trusted; the message says why."""


class MalformedNote(NoteError):
    """The text is not a well-formed signed note (or checkpoint)."""


class UnknownKey(NoteError):
    """The note carries no signature by the expected key (name and key id)."""


class BadSignature(NoteError):
    """A signature by the expected key does not verify: the note was altered."""


class MalformedKey(NoteError):
    """A verifier key, key name or private key that is not well formed."""


def is_valid_name(name: str) -> bool:
    """A key name: non-empty, no Unicode space, no `+`, no control character."""
    return (
        bool(name)
        and "+" not in name
        and not any(c in _SPACES or ord(c) < 0x20 for c in name)
        and _is_utf8(name)
    )


def key_id(name: str, public_key: bytes) -> int:
    """The 32-bit id of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def b64decode(text: str) -> bytes:
    """Standard padded base64 (RFC 4648 §4) in its one canonical spelling, else ValueError."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as e:
        raise ValueError(f"not base64: {e}") from None
    if base64.b64encode(raw).decode() != text:
        raise ValueError("not canonical base64")
    return raw


def b64encode(raw: bytes) -> str:
    """Standard padded base64 (RFC 4648 §4)."""
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Verifier:
    """One Ed25519 public key under its name: checks signatures that claim (name, key id)."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_name(self.name):
            raise MalformedKey(f"bad key name {self.name!r}: empty, or has a space or '+'")
        if len(self.public_key) != 32:
            raise MalformedKey(f"an Ed25519 public key is 32 bytes, not {len(self.public_key)}")

    @property
    def key_id(self) -> int:
        """The key id in signature lines."""
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key text `<name>+<hex key id>+<base64(0x01 ‖ public key)>`."""
        return f"{self.name}+{self.key_id:08x}+{b64encode(bytes([ED25519]) + self.public_key)}"

    @property
    def label(self) -> str:
        """`name+keyid`, how errors name this key."""
        return f"{self.name}+{self.key_id:08x}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse a verifier key; its key id must match its name and public key."""
        parts = vkey.split("+", 2)  # base64 may hold '+': the key is the rest
        if len(parts) != 3:
            raise MalformedKey(f"a verifier key is name+keyid+key, got {vkey!r}")
        name, hex_id, key64 = parts
        if len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
            raise MalformedKey(f"bad key id {hex_id!r} in verifier key (8 hex digits)")
        try:
            key = b64decode(key64)
        except ValueError as e:
            raise MalformedKey(f"bad public key in verifier key: {e}") from None
        if not key or key[0] != ED25519:
            raise MalformedKey("verifier key is not an Ed25519 key (type byte 0x01)")
        verifier = cls(name, key[1:])
        if verifier.key_id != int(hex_id, 16):
            raise MalformedKey(f"verifier key's id {hex_id} does not match its name and key")
        return verifier

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether signature is this key's Ed25519 signature of text."""
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except (InvalidSignature, ValueError):
            return False
        return True


def private_seed(private_key: Ed25519PrivateKey) -> bytes:
    """The 32-byte RFC 8032 seed of a private key."""
    return private_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The 32-byte RFC 8032 public key of a private key."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def signature_line(name: str, key_id_: int, signature: bytes) -> str:
    """`— <name> <base64(key id ‖ signature)>\\n`."""
    return f"{_DASH}{name} {b64encode(key_id_.to_bytes(4, 'big') + signature)}\n"


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note of text (which must end in a newline) by one key."""
    if not text.endswith("\n"):
        raise MalformedNote("a note's text must end with a newline")
    check_characters(text)
    if not is_valid_name(name):
        raise MalformedKey(f"bad key name {name!r}: empty, or has a space or '+'")
    signature = private_key.sign(text.encode("utf-8"))
    return text + "\n" + signature_line(name, key_id(name, public_bytes(private_key)), signature)


def check_characters(text: str) -> None:
    """Reject text that is not UTF-8 or holds a control character other than newline."""
    if not _is_utf8(text):
        raise MalformedNote("note is not valid UTF-8")
    for c in text:
        if ord(c) < 0x20 and c != "\n":
            raise MalformedNote(f"note contains control character {c!r}")


@dataclass(frozen=True)
class SignatureLine:
    """One parsed signature line: who claims to have signed, and the signature bytes."""

    name: str
    key_id: int
    signature: bytes

    @property
    def label(self) -> str:
        """`name+keyid`, how errors name the signing key."""
        return f"{self.name}+{self.key_id:08x}"


def split_note(note: str | bytes) -> tuple[str, list[SignatureLine]]:
    """The text (final newline included) and the signature lines; nothing verified."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("note is not valid UTF-8") from None
    check_characters(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNote("no blank line between the text and the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise MalformedNote("no signature lines after the blank line")
    if not block.endswith("\n"):
        raise MalformedNote("the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    return text, [_parse_signature_line(line) for line in lines]


def _parse_signature_line(line: str) -> SignatureLine:
    if not line.startswith(_DASH):
        raise MalformedNote(f"signature line does not start with an em dash: {line[:40]!r}")
    name, _, sig64 = line[len(_DASH) :].partition(" ")
    if not is_valid_name(name):
        raise MalformedNote(f"bad key name in signature line: {name!r}")
    try:
        raw = b64decode(sig64)
    except ValueError as e:
        raise MalformedNote(f"signature of {name} is {e}") from None
    if len(raw) < 5:
        raise MalformedNote(f"signature of {name} is too short")
    return SignatureLine(name, int.from_bytes(raw[:4], "big"), raw[4:])


def open_note(note: str | bytes, verifier: Verifier) -> str:
    """The note's text, once every signature by verifier's key has verified (at least one).

    Signatures by other keys, also one sharing the name or the id (not both), are ignored,
    as the spec requires; a known key's failing signature rejects the whole note.
    """
    text, lines = split_note(note)
    ours = [s for s in lines if (s.name, s.key_id) == (verifier.name, verifier.key_id)]
    if not ours:
        found = ", ".join(s.label for s in lines)
        raise UnknownKey(f"note is not signed by the expected key {verifier.label} ({found})")
    message = text.encode("utf-8")
    for line in ours:
        if not verifier.verify(message, line.signature):
            raise BadSignature(f"signature by {verifier.label} does not verify: note altered")
    return text


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
