"""`runledger verify` on both stores, against histories changed straight in the database: a
changed byte and a deleted event are named by run and sequence from the chains; a cut-off
tail and a run rewritten with consistent hashes are caught by the Merkle tree, through a
checkpoint an auditor kept (and named by run and sequence through the stored log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.checkpoints import Signer
from adapters.notes import Verifier
from api import audit_cli, cli
from api.service.runtime import Runtime
from tests.integration.audit_helpers import (
    change_one_byte,
    cover_tracks,
    delete_event,
    events,
    failures,
    keep_checkpoint,
    last_version,
    rewrite_run,
    runledger,
    sign_now,
    some_history,
)

Capture = pytest.CaptureFixture[str]


def verify(capsys: Capture, runtime: Runtime, *argv: str) -> tuple[int, list[str]]:
    """`runledger verify` on the runtime's database (while it is open, as on a live server)."""
    return runledger(capsys, "verify", "--database", runtime.config.database_url, *argv)


def test_an_untouched_history_verifies_with_its_log_and_a_kept_checkpoint(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    some_history(runtime)
    kept = keep_checkpoint(runtime, tmp_path / "checkpoint")
    key = runtime.signer.vkey

    code, out = verify(capsys, runtime, "--checkpoint", str(kept), "--public-key", key)

    assert code == 0, out
    assert out[-1].startswith(f"runledger verify: ok: {len(events(runtime))} events in 5 streams")
    assert out[-1].endswith(", 3 checkpoints")  # the log's first (size 0), size 16, the file


def test_without_a_log_yet_verify_checks_the_chains_and_says_so(
    runtime: Runtime, capsys: Capture
) -> None:
    some_history(runtime)

    code, out = verify(capsys, runtime)

    assert code == 0
    assert "the Merkle log has nothing to compare yet" in "\n".join(out)


def test_one_changed_byte_is_named_by_run_and_sequence(runtime: Runtime, capsys: Capture) -> None:
    runs = some_history(runtime)["runs"]
    change_one_byte(runtime, runs[0], 3)

    code, out = verify(capsys, runtime)

    assert code == 1
    assert failures(out) == [f"run {runs[0]} sequence 3: hash_mismatch"]


def test_a_deleted_event_is_named_by_run_and_sequence(runtime: Runtime, capsys: Capture) -> None:
    history = some_history(runtime)
    delete_event(runtime, history["runs"][0], 3)
    delete_event(runtime, history["project"], 2)

    code, out = verify(capsys, runtime)

    assert code == 1
    assert f"run {history['runs'][0]} sequence 3: missing_sequence" in out
    assert f"project {history['project']} version 2: missing_sequence" in out


def test_a_cut_off_tail_is_caught_by_a_kept_checkpoint(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    runs = some_history(runtime)["runs"]
    kept = keep_checkpoint(runtime, tmp_path / "checkpoint")
    delete_event(runtime, runs[1], last_version(runtime, runs[1]))
    cover_tracks(runtime)

    assert verify(capsys, runtime)[0] == 0  # every chain and the log still hold
    key = runtime.signer.vkey
    code, out = verify(capsys, runtime, "--checkpoint", str(kept), "--public-key", key)

    assert code == 1
    assert failures(out) == [
        f"checkpoint file {kept}: signed for 16 events, the history holds 15: events were "
        "removed (the history cut off, or deleted from)"
    ]


def test_a_history_cut_off_at_its_end_is_caught_by_a_kept_checkpoint(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    some_history(runtime)
    kept = keep_checkpoint(runtime, tmp_path / "checkpoint")
    stream, version, *_ = events(runtime)[-1]
    delete_event(runtime, stream, version)
    cover_tracks(runtime)

    assert verify(capsys, runtime)[0] == 0
    key = runtime.signer.vkey
    code, out = verify(capsys, runtime, "--checkpoint", str(kept), "--public-key", key)

    assert code == 1
    assert failures(out) == [
        f"checkpoint file {kept}: signed for 16 events, the history holds 15: events were "
        "removed (the history cut off, or deleted from)"
    ]


def test_a_run_rewritten_with_consistent_hashes_is_caught_by_a_kept_checkpoint(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    runs = some_history(runtime)["runs"]
    kept = keep_checkpoint(runtime, tmp_path / "checkpoint")
    rewrite_run(runtime, runs[2])
    cover_tracks(runtime)

    assert verify(capsys, runtime)[0] == 0  # the chains hold: they were recomputed
    key = runtime.signer.vkey
    code, out = verify(capsys, runtime, "--checkpoint", str(kept), "--public-key", key)

    assert code == 1
    assert failures(out) == [
        f"checkpoint file {kept}: its root is not the events' tree at size 16: the history "
        "was rewritten"
    ]


def test_with_the_stored_log_a_cut_off_tail_and_a_rewritten_run_are_named(
    runtime: Runtime, capsys: Capture
) -> None:
    runs = some_history(runtime)["runs"]
    sign_now(runtime)
    delete_event(runtime, runs[1], 4)  # leaf 10: the run's last event
    rewrite_run(runtime, runs[2])  # leaf 2: its only event

    code, out = verify(capsys, runtime)

    assert code == 1
    assert failures(out) == [
        f"run {runs[2]} sequence 1: not the event logged as leaf 2: changed since",
        f"run {runs[1]} sequence 4: in the Merkle log (leaf 10), not in the store",
        "checkpoint 16: signed for 16 events, the history holds 15: events were removed "
        "(the history cut off, or deleted from)",
    ]


def test_a_checkpoint_signed_by_another_key_fails(
    runtime: Runtime, capsys: Capture, tmp_path: Path
) -> None:
    some_history(runtime)
    kept = keep_checkpoint(runtime, tmp_path / "checkpoint")
    other = Signer(Ed25519PrivateKey.generate(), runtime.signer.name).vkey

    code, out = verify(capsys, runtime, "--checkpoint", str(kept), "--public-key", other)
    assert code == 1
    theirs, ours = Verifier.from_vkey(other).label, runtime.signer.verifier.label
    reason = f"bad signature (note is not signed by the expected key {theirs} ({ours}))"
    assert failures(out) == [f"checkpoint file {kept}: {reason}"]
    assert f"checkpoints in the store signed by keys not given: ['{runtime.signer.vkey}']" in (
        "\n".join(out)
    )

    with runtime.db.transaction() as cur:  # the store's key is trusted when none is given
        cur.execute("DELETE FROM checkpoints")
    code, out = verify(capsys, runtime, "--checkpoint", str(kept))  # and then none is known
    assert code == 1
    assert failures(out) == [
        f"checkpoint file {kept}: no public key to check it with (give --public-key)"
    ]


@pytest.mark.parametrize("which", ["run", "project"])
def test_one_run_or_project_is_verified_on_its_chains(
    runtime: Runtime, capsys: Capture, which: str
) -> None:
    history: dict[str, Any] = some_history(runtime)
    target = history["runs"][0] if which == "run" else history["project"]
    assert verify(capsys, runtime, f"--{which}", str(target))[0] == 0

    delete_event(runtime, history["runs"][2], 1)  # another run: not this one's business
    assert verify(capsys, runtime, f"--{which}", str(target))[0] == 0

    delete_event(runtime, history["project"], 3)
    code, out = verify(capsys, runtime, "--project", str(history["project"]))
    assert code == 1
    assert f"project {history['project']} version 3: missing_sequence" in out


def test_off_a_terminal_progress_is_plain_lines_on_stderr(
    runtime: Runtime, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    some_history(runtime)
    monkeypatch.setattr(audit_cli, "PLAIN_EVERY", 0.0)  # a line for every event

    code = cli.main(["verify", "--database", runtime.config.database_url])

    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("runledger verify: ")] == [
        f"runledger verify: {n}/16 events" for n in range(1, 17)
    ]
