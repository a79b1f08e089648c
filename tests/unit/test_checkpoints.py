"""Checkpoints of the Merkle log are c2sp.org/tlog-checkpoint signed notes: what the signer
writes is checked here against the spec by hand (bytes, key id, Ed25519 via `cryptography`
directly), read back, and any change to it is refused with the reason."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from adapters.checkpoints import (
    Checkpoint,
    NoteError,
    Signer,
    WrongOrigin,
    parse_checkpoint,
    verify_note,
)
from adapters.notes import BadSignature, MalformedNote, UnknownKey

ORIGIN = "runledger/server-1"
ROOT = hashlib.sha256(b"a root").digest()


def signer(name: str = ORIGIN) -> Signer:
    """A fresh key under name."""
    return Signer(Ed25519PrivateKey.generate(), name)


def test_a_checkpoint_is_origin_size_and_base64_root_each_on_a_line() -> None:
    assert Checkpoint(ORIGIN, 1234, ROOT).text() == (
        f"{ORIGIN}\n1234\n{base64.b64encode(ROOT).decode()}\n"
    )


def test_a_signed_checkpoint_verifies_and_reads_back_what_was_signed() -> None:
    key = signer()
    note = key.sign(ORIGIN, 1234, ROOT)
    expected = Checkpoint(ORIGIN, 1234, ROOT)
    assert verify_note(note, key.vkey) == expected
    assert verify_note(note, key.public_key, ORIGIN) == expected
    assert verify_note(note.encode(), key.verifier) == expected
    assert parse_checkpoint(note) == expected


def test_extension_lines_are_signed_and_read_back() -> None:
    key = signer()
    note = key.sign(ORIGIN, 7, ROOT, ["ts 1700000000", "other"])
    assert note.startswith(Checkpoint(ORIGIN, 7, ROOT).text() + "ts 1700000000\nother\n\n")
    assert verify_note(note, key.vkey).extensions == ("ts 1700000000", "other")


def test_the_empty_tree_has_size_zero() -> None:
    key = signer()
    empty_root = hashlib.sha256(b"").digest()
    assert verify_note(key.sign(ORIGIN, 0, empty_root), key.vkey).size == 0


def test_the_documented_example_is_reproduced_byte_for_byte() -> None:
    """docs/audit.md's worked example: RFC 8410's key signing the empty tree."""
    pem = (
        b"-----BEGIN PRIVATE KEY-----\n"
        b"MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
        b"-----END PRIVATE KEY-----\n"
    )
    private_key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private_key, Ed25519PrivateKey)
    key = Signer(private_key, "runledger/example")
    vkey = "runledger/example+be4c3aa1+ARm/RAlphM3+hUG6wWfcO5bIUIaqMLa2ywxcOK1wMWbh"
    note = (
        "runledger/example\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
        "— runledger/example vkw6oWssIn43iFqEHfINyDV+kzUENrny0d4gfwoP14MLbUGBvUHWSZ01uOBXu1csTJ"
        "vZ1e1Mwa1+z5dhTsOOyPt2Cwk=\n"
    )
    assert key.vkey == vkey
    assert key.sign("runledger/example", 0, hashlib.sha256(b"").digest()) == note
    assert verify_note(note, vkey) == Checkpoint("runledger/example", 0, hashlib.sha256().digest())


def test_the_signature_checks_out_by_the_spec_computed_independently() -> None:
    """Rebuild the signed message, the key id and the vkey from the spec's words alone."""
    key = signer()
    note = key.sign(ORIGIN, 42, ROOT)

    body = f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    prefix = "\u2014 " + ORIGIN + " "
    assert note.startswith(body + "\n" + prefix) and note.endswith("\n")
    assert note.count("\n") == 5
    raw = base64.b64decode(note[len(body) + 1 + len(prefix) : -1], validate=True)
    assert len(raw) == 4 + 64

    expected_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + key.public_key).digest()[:4]
    assert raw[:4] == expected_id
    assert key.key_id == int.from_bytes(expected_id, "big")
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(raw[4:], body.encode())
    typed_key = base64.b64encode(bytes([1]) + key.public_key).decode()
    assert key.vkey == f"{ORIGIN}+{expected_id.hex()}+{typed_key}"


def test_changing_any_bit_of_the_note_is_refused() -> None:
    key = signer()
    note = key.sign(ORIGIN, 99, ROOT).encode()
    for i in range(len(note)):
        for bit in range(8):
            tampered = note[:i] + bytes([note[i] ^ (1 << bit)]) + note[i + 1 :]
            with pytest.raises(NoteError):
                verify_note(tampered, key.vkey)


def test_any_other_character_anywhere_in_the_signatures_base64_is_refused() -> None:
    """Also in the padding bits of the last character, which a lax decoder drops."""
    key = signer()
    note = key.sign(ORIGIN, 99, ROOT)
    start = note.rindex(" ") + 1
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    for i in range(start, len(note) - 1):
        for c in alphabet.replace(note[i], ""):
            with pytest.raises(NoteError):
                verify_note(note[:i] + c + note[i + 1 :], key.vkey)


def test_a_changed_body_is_a_bad_signature() -> None:
    key = signer()
    note = key.sign(ORIGIN, 99, ROOT)
    with pytest.raises(BadSignature, match=r"runledger/server-1\+[0-9a-f]{8}"):
        verify_note(note.replace("\n99\n", "\n98\n"), key.vkey)


def test_every_truncation_and_any_appended_text_is_refused() -> None:
    key = signer()
    note = key.sign(ORIGIN, 99, ROOT)
    for end in range(len(note)):
        with pytest.raises(NoteError):
            verify_note(note[:end], key.vkey)
    with pytest.raises(MalformedNote):
        verify_note(note + "more\n", key.vkey)


def test_another_key_even_under_the_same_name_is_an_unknown_key() -> None:
    note = signer().sign(ORIGIN, 99, ROOT)
    with pytest.raises(UnknownKey, match="not signed by the expected key"):
        verify_note(note, signer().vkey)
    with pytest.raises(UnknownKey):
        verify_note(note, signer("runledger/server-2").vkey)


def test_a_checkpoint_of_another_origin_is_refused_unless_that_origin_is_expected() -> None:
    key = signer()
    note = key.sign_text(Checkpoint("runledger/elsewhere", 3, ROOT).text())
    with pytest.raises(WrongOrigin, match="runledger/elsewhere"):
        verify_note(note, key.vkey)
    assert verify_note(note, key.vkey, origin="runledger/elsewhere").size == 3


def test_a_signed_text_that_is_not_a_checkpoint_is_malformed() -> None:
    key = signer()
    with pytest.raises(MalformedNote):
        verify_note(key.sign_text("if this is a checkpoint I'll eat my hat\n"), key.vkey)


def test_a_signer_signs_only_as_its_own_origin() -> None:
    with pytest.raises(ValueError, match="signs as"):
        signer().sign("runledger/other", 1, ROOT)


@pytest.mark.parametrize(
    ("size", "root"),
    [(-1, ROOT), (2**64, ROOT), (True, ROOT), (1, ROOT[:31]), (1, ROOT + b"\0")],
)
def test_a_signer_refuses_sizes_outside_64_bits_and_roots_not_sha256(
    size: int, root: bytes
) -> None:
    with pytest.raises(MalformedNote):
        signer().sign(ORIGIN, size, root)


@pytest.mark.parametrize("extension", ["", "two\nlines", "tab\there"])
def test_a_signer_refuses_empty_or_multiline_extensions(extension: str) -> None:
    with pytest.raises(MalformedNote):
        signer().sign(ORIGIN, 1, ROOT, [extension])


@pytest.mark.parametrize("name", ["", "has space", "has+plus"])
def test_a_signer_needs_a_valid_key_name(name: str) -> None:
    with pytest.raises(ValueError):
        signer(name)


B64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{ORIGIN}\n1\n", "lines"),
        (f"\n1\n{B64}\n", "origin"),
        (f"{ORIGIN}\n01\n{B64}\n", "leading zeros"),
        (f"{ORIGIN}\n-1\n{B64}\n", "decimal"),
        (f"{ORIGIN}\n+1\n{B64}\n", "decimal"),
        (f"{ORIGIN}\n1_0\n{B64}\n", "decimal"),
        (f"{ORIGIN}\n\u0661\n{B64}\n", "decimal"),
        (f"{ORIGIN}\n{2**64}\n{B64}\n", "64-bit"),
        (f"{ORIGIN}\n1\n{B64[:-1]}\n", "base64"),
        (f"{ORIGIN}\n1\nYmFuYW5hcw==\n", "bytes"),
        (f"{ORIGIN}\n1\n{B64}\n\nextension\n", "empty line"),
    ],
)
def test_malformed_checkpoint_texts_are_refused_with_the_reason(text: str, reason: str) -> None:
    key = signer()
    with pytest.raises(MalformedNote, match=reason):
        verify_note(key.sign_text(text), key.vkey)


def test_the_largest_tree_size_fits() -> None:
    key = signer()
    assert verify_note(key.sign(ORIGIN, 2**64 - 1, ROOT), key.vkey).size == 2**64 - 1


def test_a_raw_public_key_needs_its_name() -> None:
    key = signer()
    with pytest.raises(ValueError, match="name"):
        verify_note(key.sign(ORIGIN, 1, ROOT), key.public_key)
