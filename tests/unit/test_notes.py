"""Signed notes are byte-compatible with the reference: the published examples of
golang.org/x/mod/sumdb/note (note_test.go, example_test.go) and of c2sp.org/signed-note are
reproduced and verified exactly, and what they reject is rejected here too."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.notes import (
    BadSignature,
    MalformedKey,
    MalformedNote,
    UnknownKey,
    Verifier,
    b64decode,
    is_valid_name,
    open_note,
    sign_note,
    signature_line,
)

# golang.org/x/mod/sumdb/note, note_test.go and the package documentation.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLo"
    "x33WWd1RvMc+QQ=\n"
)
# c2sp.org/signed-note, "Verifier keys: Example".
FOO_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
FOO_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONn"
    "cAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def peter_private_key() -> Ed25519PrivateKey:
    """The seed inside PETER_SKEY (base64 of 0x01 ‖ 32-byte seed)."""
    raw = b64decode(PETER_SKEY.split("+", 4)[4])
    assert raw[0] == 1
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_signing_the_go_example_gives_the_go_note_byte_for_byte() -> None:
    assert sign_note(TEXT, "PeterNeumann", peter_private_key()) == TEXT + "\n" + PETER_SIG


def test_the_go_examples_verifier_key_is_derived_from_its_private_key() -> None:
    public = peter_private_key().public_key().public_bytes_raw()
    assert Verifier("PeterNeumann", public).vkey == PETER_VKEY
    assert Verifier.from_vkey(PETER_VKEY).key_id == 0xC74F20A3


def test_the_c2sp_example_note_verifies_with_its_verifier_key() -> None:
    assert open_note(FOO_NOTE, Verifier.from_vkey(FOO_VKEY)) == "This is an example message.\n"


def test_a_cosigned_note_verifies_with_either_key_the_other_signature_ignored() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, Verifier.from_vkey(PETER_VKEY)) == TEXT
    assert open_note(note, Verifier.from_vkey(ENOCH_VKEY)) == TEXT


def test_a_note_signed_only_by_other_keys_is_an_unknown_key() -> None:
    with pytest.raises(UnknownKey, match=r"PeterNeumann\+c74f20a3.*EnochRoot\+af0cfe78"):
        open_note(TEXT + "\n" + ENOCH_SIG, Verifier.from_vkey(PETER_VKEY))


def test_a_known_keys_altered_signature_rejects_the_note_even_beside_a_good_one() -> None:
    altered = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    verifier = Verifier.from_vkey(PETER_VKEY)
    with pytest.raises(BadSignature, match="PeterNeumann"):
        open_note(TEXT + "\n" + altered, verifier)
    with pytest.raises(BadSignature):
        open_note(TEXT + "\n" + PETER_SIG + altered, verifier)


def test_a_signature_claiming_the_keys_name_and_id_but_made_by_another_key_is_bad() -> None:
    impostor = Ed25519PrivateKey.generate()
    line = signature_line("PeterNeumann", 0xC74F20A3, impostor.sign(TEXT.encode()))
    with pytest.raises(BadSignature):
        open_note(TEXT + "\n" + line, Verifier.from_vkey(PETER_VKEY))


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("—", "-"),
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),
        TEXT + "\r\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_rejected_as_malformed(note: str) -> None:
    with pytest.raises(MalformedNote):
        open_note(note, Verifier.from_vkey(PETER_VKEY))


def test_a_note_that_is_not_utf8_is_malformed() -> None:
    with pytest.raises(MalformedNote, match="UTF-8"):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), Verifier.from_vkey(PETER_VKEY))


def test_the_text_ends_at_the_last_blank_line_so_it_may_hold_blank_lines() -> None:
    text = "one\n\ntwo\n"
    key = Ed25519PrivateKey.generate()
    note = sign_note(text, "k", key)
    assert open_note(note, Verifier("k", key.public_key().public_bytes_raw())) == text


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    """As Go's TestNewVerifier: every proper substring and every one-character change."""
    for i in range(len(PETER_VKEY)):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(MalformedKey):
                    Verifier.from_vkey(PETER_VKEY[i:j])
    for i, c in enumerate(PETER_VKEY):
        with pytest.raises(MalformedKey):
            Verifier.from_vkey(PETER_VKEY[:i] + chr(ord(c) + 1) + PETER_VKEY[i + 1 :])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_verifier_keys_of_the_wrong_length_or_algorithm_are_refused(vkey: str) -> None:
    with pytest.raises(MalformedKey):
        Verifier.from_vkey(vkey)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("runledger/srv-1", True),
        ("example.com/é", True),
        ("", False),
        ("a+b", False),
        ("a b", False),
        ("a\tb", False),
        ("a\u00a0b", False),
        ("a\u2003b", False),
        ("a\u3000b", False),
        ("a\nb", False),
    ],
)
def test_key_names_are_non_empty_without_spaces_or_plus(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid


@pytest.mark.parametrize("text", ["YQ", "YQ==\n", "YR==", "Y Q==", "YQ===", "Y+/="])
def test_base64_must_be_standard_padded_and_canonical(text: str) -> None:
    with pytest.raises(ValueError):
        b64decode(text)
