"""`runledger export` and `runledger import` on both stores: an export imported into an empty
store gives the same events, hashes, read models and Merkle root, and its checkpoints
verify against the new store; an export with one changed byte is refused by import (which
then stores nothing) and by offline verify."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters import readmodels
from adapters.checkpoints import Signer
from adapters.export_verify import verify_export
from api import cli
from api.service.runtime import Runtime
from tests.integration.audit_helpers import (
    events,
    failures,
    keep_checkpoint,
    root_of,
    runledger,
    sign_now,
    some_history,
)
from tests.support import fresh_store, open_runtime, runledger_process

Capture = pytest.CaptureFixture[str]


@contextmanager
def another_store(runtime: Runtime, directory: Path) -> Iterator[str]:
    """A fresh, empty database of the same kind as the runtime's."""
    directory.mkdir()
    with fresh_store(runtime.settings.kind, directory) as url:
        yield url


def read_models(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read model, in a stable order."""
    with runtime.db.reading() as cur:
        return {
            table: sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in readmodels.READ_MODEL_TABLES
        }


def export(capsys: Capture, url: str, path: Path, *scope: str) -> Path:
    """`runledger export` of a database to a file."""
    assert runledger(capsys, "export", "--database", url, "-o", str(path), *scope)[0] == 0
    return path


def test_an_import_reproduces_events_hashes_read_models_and_the_merkle_root(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    some_history(runtime)
    kept = keep_checkpoint(runtime, tmp_path / "checkpoint")
    key = runtime.signer
    exported = export(capsys, runtime.config.database_url, tmp_path / "history.ndjson")

    with another_store(runtime, tmp_path / "b") as url:
        code, out = runledger(capsys, "import", str(exported), "--database", url)
        assert code == 0, out
        copy = open_runtime(url, tmp_path / "b")
        try:
            assert events(copy) == events(runtime)
            assert read_models(copy) == read_models(runtime)
            assert root_of(copy) == root_of(runtime)
        finally:
            copy.close()
        code, out = runledger(
            capsys, "verify", "--database", url, "--checkpoint", str(kept), "--public-key", key.vkey
        )
        assert code == 0, out


def test_an_export_with_one_changed_byte_is_refused_by_import_and_by_offline_verify(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    some_history(runtime)
    sign_now(runtime)
    key = runtime.signer
    data = export(capsys, runtime.config.database_url, tmp_path / "history.ndjson").read_bytes()
    assert verify_export(io.BytesIO(data), [key.vkey]).ok

    with another_store(runtime, tmp_path / "b") as url:
        for at in (len(data) // 3, len(data) // 2, len(data) - 30):
            changed = bytearray(data)
            changed[at] ^= 0x01
            (tmp_path / "changed.ndjson").write_bytes(changed)
            code, out = runledger(
                capsys, "import", str(tmp_path / "changed.ndjson"), "--database", url
            )
            assert code == 1 and failures(out), out
            code, out = runledger(capsys, "verify", "--file", str(tmp_path / "changed.ndjson"))
            assert code == 1 and failures(out), out
        copy = open_runtime(url, tmp_path / "b")
        try:
            assert copy.db.head() == 0  # nothing stored
        finally:
            copy.close()


def test_offline_verify_refuses_an_export_with_any_one_byte_changed(
    capsys: Capture, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"  # the file is the same from either store
    runtime = open_runtime(url, tmp_path)
    try:
        some_history(runtime)
        sign_now(runtime)
        key = runtime.signer
        data = export(capsys, url, tmp_path / "history.ndjson").read_bytes()
    finally:
        runtime.close()
    assert verify_export(io.BytesIO(data), [key.vkey]).ok

    for at in range(len(data)):  # every byte, in two ways
        for bit in (0x01, 0x20):
            changed = bytearray(data)
            changed[at] ^= bit
            assert not verify_export(io.BytesIO(changed), [key.vkey]).ok, (at, bit)


def test_a_broken_chain_is_refused_by_import_naming_run_and_sequence(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    runs = some_history(runtime)["runs"]
    lines = export(capsys, runtime.config.database_url, tmp_path / "h.ndjson").read_bytes()
    kept = [line for line in lines.splitlines(keepends=True) if b'"sequence":3,' not in line]
    (tmp_path / "h.ndjson").write_bytes(b"".join(kept))  # run 0's and run 1's third events

    with another_store(runtime, tmp_path / "b") as url:
        code, out = runledger(capsys, "import", str(tmp_path / "h.ndjson"), "--database", url)

    assert code == 1
    assert failures(out) == [
        f"run {runs[0]} sequence 3: missing_sequence",
        f"run {runs[1]} sequence 3: missing_sequence",
    ]


def test_import_goes_into_an_empty_store_only(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    some_history(runtime)
    exported = export(capsys, runtime.config.database_url, tmp_path / "h.ndjson")

    capsys.readouterr()
    code = cli.main(["import", str(exported), "--database", runtime.config.database_url])

    assert code == 2
    assert "is not empty" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["run", "project"])
def test_an_export_of_one_run_or_project_verifies_offline_on_its_chains(
    runtime: Runtime, capsys: Capture, tmp_path: Path, which: str
) -> None:
    history = some_history(runtime)
    target = history["runs"][1] if which == "run" else history["project"]
    path = tmp_path / "part.ndjson"
    export(capsys, runtime.config.database_url, path, f"--{which}", str(target))

    code, out = runledger(capsys, "verify", "--file", str(path))

    assert code == 0, out
    streams = 1 if which == "run" else 2  # the project and the run its task started
    assert f"events in {streams} streams" in out[-1]
    assert "the Merkle log is checked on an export of --all" in "\n".join(out)


def test_the_checkpoints_of_an_export_verify_offline_with_the_public_key_only(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    some_history(runtime)
    sign_now(runtime)
    key = runtime.signer
    path = export(capsys, runtime.config.database_url, tmp_path / "h.ndjson")

    code, out = runledger(capsys, "verify", "--file", str(path), "--public-key", key.vkey)
    assert code == 0, out
    assert out[-1].endswith(", 2 checkpoints")  # the log's first (size 0), and size 16

    other = Signer(Ed25519PrivateKey.generate(), runtime.signer.name)
    (tmp_path / "key.pub").write_text(other.vkey + "\n")  # someone else's key, in a file
    code, out = runledger(
        capsys, "verify", "--file", str(path), "--public-key", str(tmp_path / "key.pub")
    )
    assert code == 1
    assert failures(out)[0].startswith("checkpoint 0 (line 18): bad signature")


def test_each_command_runs_as_a_process_on_a_stopped_servers_database(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    runtime = open_runtime(url, tmp_path)
    some_history(runtime)
    runtime.close()
    env = {**os.environ, "RUNLEDGER_DATA_DIR": str(tmp_path / "data")}
    process = partial(runledger_process, env)

    exported = process("export", "--database", url, "-o", str(tmp_path / "h.ndjson"))
    assert exported.returncode == 0, exported.stderr
    checked = process("verify", "--file", str(tmp_path / "h.ndjson"))
    assert checked.returncode == 0, checked.stdout
    copy = f"sqlite:///{tmp_path / 'b.db'}"
    imported = process("import", str(tmp_path / "h.ndjson"), "--database", copy)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    verified = process("verify", "--database", copy)
    assert verified.returncode == 0, verified.stdout
    assert "runledger verify: ok: 16 events in 5 streams" in verified.stdout

    broken = process("verify", "--database", f"sqlite:///{tmp_path / 'none.db'}")
    assert broken.returncode == 2
    assert "no SQLite database" in broken.stderr


@pytest.mark.postgres
def test_an_export_from_sqlite_imports_into_postgresql_with_the_same_hashes(
    capsys: Capture, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    source = open_runtime(url, tmp_path)
    try:
        some_history(source)
        exported = export(capsys, url, tmp_path / "h.ndjson")
        with fresh_store("postgres", tmp_path) as pg_url:
            assert runledger(capsys, "import", str(exported), "--database", pg_url)[0] == 0
            copy = open_runtime(pg_url, tmp_path / "b")
            try:
                assert events(copy) == events(source)
                assert root_of(copy) == root_of(source)
                assert read_models(copy) == read_models(source)
            finally:
                copy.close()
    finally:
        source.close()
