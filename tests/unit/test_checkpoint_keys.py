"""The checkpoint signing key: the operator's file (PEM as openssl writes it, or Go's
PRIVATE+KEY form) or one made once in the data directory, private to its owner, and the
same key for every process that starts on that directory, also at the same moment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.checkpoints import (
    KEY_FILE_NAME,
    SigningKeyError,
    _create_key_file,
    load_or_create,
    verify_note,
)
from tests.unit.test_notes import PETER_SKEY, PETER_VKEY, TEXT

NAME = "runledger/server-1"
ROOT = Path(__file__).resolve().parents[2]
# RFC 8410 §10.3: an Ed25519 private key in PEM PKCS#8, as `openssl genpkey` writes it;
# its public key is the one of §10.1.
RFC8410_PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
    b"-----END PRIVATE KEY-----\n"
)
RFC8410_PUBLIC = bytes.fromhex("19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1")


def key_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    """An operator's key file with the given content and mode."""
    path = tmp_path / "operator.key"
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_a_key_is_generated_on_first_start_private_to_its_owner(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old_umask = os.umask(0)  # even a permissive umask must not expose the key
    try:
        signer = load_or_create(data_dir, None, NAME)
    finally:
        os.umask(old_umask)
    path = data_dir / KEY_FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert os.listdir(data_dir) == [KEY_FILE_NAME]
    assert verify_note(signer.sign(NAME, 1, bytes(32)), signer.vkey).size == 1


def test_the_generated_key_is_reused_on_later_starts(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, None, NAME)
    again = load_or_create(tmp_path, None, NAME)
    assert again.public_key == first.public_key
    assert again.vkey == first.vkey


def test_a_key_file_already_in_place_is_never_replaced(tmp_path: Path) -> None:
    """What a second process does when it lost the race: its candidate key is dropped."""
    path = tmp_path / KEY_FILE_NAME
    _create_key_file(path, Ed25519PrivateKey.generate())
    winner = path.read_bytes()
    _create_key_file(path, Ed25519PrivateKey.generate())
    assert path.read_bytes() == winner
    assert os.listdir(tmp_path) == [KEY_FILE_NAME]


def test_threads_starting_at_once_all_get_the_one_key(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    keys: list[bytes] = []

    def start() -> None:
        barrier.wait()
        keys.append(load_or_create(tmp_path, None, NAME).public_key)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert os.listdir(tmp_path) == [KEY_FILE_NAME]


def test_processes_starting_at_once_all_get_the_one_key(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from adapters.checkpoints import load_or_create;"
        f"print(load_or_create(Path(sys.argv[1]), None, {NAME!r}).vkey)"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    vkeys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    assert vkeys == {load_or_create(tmp_path, None, NAME).vkey}


def test_an_operators_pem_key_is_used_and_nothing_is_generated(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    signer = load_or_create(data_dir, key_file(tmp_path, RFC8410_PEM), NAME)
    assert signer.public_key == RFC8410_PUBLIC
    assert not data_dir.exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_key_made_with_openssl_genpkey_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "openssl.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)], check=True)
    path.chmod(0o600)
    signer = load_or_create(tmp_path / "data", path, NAME)
    assert verify_note(signer.sign(NAME, 5, bytes(32)), signer.vkey).size == 5


def test_a_go_note_private_key_is_accepted_under_its_own_name(tmp_path: Path) -> None:
    signer = load_or_create(tmp_path, key_file(tmp_path, PETER_SKEY.encode()), "PeterNeumann")
    assert signer.vkey == PETER_VKEY
    assert signer.sign_text(TEXT).endswith("RZb6KE6RyyBwJnAM=\n")


def test_a_go_note_private_key_under_another_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="named 'PeterNeumann'"):
        load_or_create(tmp_path, key_file(tmp_path, PETER_SKEY.encode()), NAME)


def test_a_go_note_private_key_with_a_wrong_key_id_is_refused(tmp_path: Path) -> None:
    wrong = PETER_SKEY.replace("c74f20a3", "c74f20a4")
    with pytest.raises(SigningKeyError, match="key id"):
        load_or_create(tmp_path, key_file(tmp_path, wrong.encode()), "PeterNeumann")


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o620, 0o666])
def test_a_key_file_others_can_read_or_the_group_can_write_is_refused(
    tmp_path: Path, mode: int
) -> None:
    path = key_file(tmp_path, RFC8410_PEM, mode)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_or_create(tmp_path, path, NAME)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_a_key_file_readable_by_owner_or_group_only_is_accepted(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, RFC8410_PEM, mode)
    assert load_or_create(tmp_path, path, NAME).public_key == RFC8410_PUBLIC


def test_an_exposed_generated_key_is_refused_too(tmp_path: Path) -> None:
    load_or_create(tmp_path, None, NAME)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(SigningKeyError, match="open to others"):
        load_or_create(tmp_path, None, NAME)


def test_a_missing_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_or_create(tmp_path, tmp_path / "absent.pem", NAME)
    assert os.listdir(tmp_path) == []


def test_an_encrypted_pem_key_is_refused(tmp_path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(SigningKeyError, match="encrypted"):
        load_or_create(tmp_path, key_file(tmp_path, pem), NAME)


def test_a_key_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SigningKeyError, match="not Ed25519"):
        load_or_create(tmp_path, key_file(tmp_path, pem), NAME)


def test_a_file_that_is_no_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="openssl genpkey -algorithm ed25519"):
        load_or_create(tmp_path, key_file(tmp_path, b"hello\n"), NAME)


def test_the_signer_writes_its_key_as_the_pem_it_reads(tmp_path: Path) -> None:
    signer = load_or_create(tmp_path / "a", None, NAME)
    path = key_file(tmp_path, signer.private_key_pem())
    assert load_or_create(tmp_path / "b", path, NAME).vkey == signer.vkey
