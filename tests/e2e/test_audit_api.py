"""The audit endpoints on a real server, checked with nothing of runledger's audit code: the
checkpoint's root recomputed from the events' hashes read over HTTP (RFC 9162 written in
tests/e2e/audit_helpers.py), its Ed25519 signature checked with `cryptography` directly,
and every proof verified by the RFC's algorithms."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.audit_helpers import (
    audit,
    b64,
    check_signed_note,
    checkpoint_covering,
    covered_audit,
    mth,
    verify_consistency,
    verify_inclusion,
)
from tests.e2e.helpers import global_history
from tests.e2e.runs_helpers import append, claim, history, log, submit
from tests.support import ALICE, BOB, RUNNER, Server, fresh_store


@pytest.fixture(scope="module")
def srv(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that signs a checkpoint at every event (and by time only after an hour)."""
    base: Path = tmp_path_factory.mktemp(f"audit-{store_kind}")
    with fresh_store(store_kind, base) as url:
        env = {"RUNLEDGER_CHECKPOINT_EVENTS": "1", "RUNLEDGER_CHECKPOINT_SECONDS": "3600"}
        server = Server(url, base / "data", **env).start()
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture(scope="module")
def alice(srv: Server) -> Iterator[httpx.Client]:
    with srv.client(ALICE) as client:
        yield client


@pytest.fixture(scope="module")
def run_id(srv: Server, alice: httpx.Client) -> str:
    """A run of alice's with runner output."""
    run = submit(alice, task="audit me")["run_id"]
    with srv.client(RUNNER) as runner:
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, log("one"), log("two"), log("three"))
    return str(run)


def public_key(client: httpx.Client) -> tuple[str, bytes]:
    body = client.get("/api/audit/public-key").json()
    assert body["algorithm"] == "ed25519"
    return body["key_name"], b64(body["public_key"])


def test_a_checkpoints_root_is_the_events_hashes_and_its_signature_verifies(
    alice: httpx.Client, run_id: str
) -> None:
    covered_audit(alice, run_id)
    events = global_history(alice)  # every event of this server is alice's
    checkpoint = checkpoint_covering(alice, len(events))
    name, key = public_key(alice)

    origin, size, root = check_signed_note(checkpoint["signed_note"], name, key)

    assert origin == name and name.startswith("runledger/")
    assert size == checkpoint["tree_size"] == len(events)
    leaves = [bytes.fromhex(e["hash"]) for e in sorted(events, key=lambda e: e["position"])]
    assert mth(leaves) == root == b64(checkpoint["root_hash"])


def test_a_runs_audit_proves_its_last_event_in_the_latest_checkpoint(
    alice: httpx.Client, run_id: str
) -> None:
    body = covered_audit(alice, run_id)
    events = history(alice, run_id)
    assert body["valid"] is True and "first_bad" not in body
    assert body["events"] == len(events) >= 5
    assert body["head_hash"] == events[-1]["hash"]
    name, key = public_key(alice)
    _, size, root = check_signed_note(body["checkpoint"]["signed_note"], name, key)
    proof = body["inclusion"]
    assert proof["tree_size"] == size == body["checkpoint"]["tree_size"]
    entry = bytes.fromhex(events[-1]["hash"])
    hashes = [b64(h) for h in proof["hashes"]]
    assert verify_inclusion(entry, proof["leaf_index"], size, hashes, root)
    assert not verify_inclusion(
        bytes.fromhex(events[0]["hash"]), proof["leaf_index"], size, hashes, root
    )


def test_the_checkpoint_is_a_signed_note_or_json_and_earlier_ones_are_kept(
    alice: httpx.Client, run_id: str
) -> None:
    covered_audit(alice, run_id)
    note = alice.get("/api/audit/checkpoint")
    assert note.status_code == 200 and note.headers["content-type"].startswith("text/plain")
    latest = alice.get("/api/audit/checkpoint", headers={"Accept": "application/json"}).json()
    assert note.text == latest["signed_note"]
    earlier = alice.get("/api/audit/checkpoint", params={"tree_size": 2})
    assert earlier.status_code == 200, earlier.text
    name, key = public_key(alice)
    assert check_signed_note(earlier.text, name, key)[1] == 2
    leaves = [bytes.fromhex(e["hash"]) for e in global_history(alice)]
    assert check_signed_note(earlier.text, name, key)[2] == mth(leaves[:2])


def test_an_inclusion_proof_of_ones_own_event_verifies_and_others_get_404(
    srv: Server, alice: httpx.Client, run_id: str
) -> None:
    body = covered_audit(alice, run_id)
    size = body["checkpoint"]["tree_size"]
    root = b64(body["checkpoint"]["root_hash"])
    second = history(alice, run_id)[1]
    answer = alice.get(
        "/api/audit/proofs/inclusion", params={"position": second["position"], "tree_size": size}
    )
    assert answer.status_code == 200, answer.text
    proof = answer.json()
    hashes = [b64(h) for h in proof["hashes"]]
    assert verify_inclusion(bytes.fromhex(second["hash"]), proof["leaf_index"], size, hashes, root)
    default = alice.get("/api/audit/proofs/inclusion", params={"position": second["position"]})
    assert default.json()["tree_size"] == size  # the latest checkpoint's, by default
    with srv.client(BOB) as bob:
        foreign = bob.get("/api/audit/proofs/inclusion", params={"position": second["position"]})
        assert foreign.status_code == 404
        assert bob.get(f"/api/runs/{run_id}/audit").status_code == 404


def test_a_consistency_proof_links_an_earlier_checkpoint_to_the_latest(
    alice: httpx.Client, run_id: str
) -> None:
    latest = checkpoint_covering(alice, 1)
    submit(alice, task="grow the log")
    newer = checkpoint_covering(alice, latest["tree_size"] + 1)
    for m in range(1, latest["tree_size"] + 1):
        old = alice.get(
            "/api/audit/checkpoint",
            params={"tree_size": m},
            headers={"Accept": "application/json"},
        ).json()
        answer = alice.get(
            "/api/audit/proofs/consistency", params={"from": m, "to": newer["tree_size"]}
        )
        assert answer.status_code == 200, answer.text
        hashes = [b64(h) for h in answer.json()["hashes"]]
        old_root, new_root = b64(old["root_hash"]), b64(newer["root_hash"])
        assert verify_consistency(m, newer["tree_size"], old_root, new_root, hashes), m
        assert not verify_consistency(m, newer["tree_size"], new_root, new_root, hashes), m


def test_the_public_key_is_in_the_server_info_too(srv: Server, alice: httpx.Client) -> None:
    info = httpx.get(f"{srv.url}/api/server/info").json()
    key = alice.get("/api/audit/public-key").json()
    assert info["audit"] == key
    assert key["vkey"].startswith(key["key_name"] + "+")


def test_a_runs_audit_waits_for_min_position_like_the_read_models(alice: httpx.Client) -> None:
    run = submit(alice, task="fresh")
    answer = alice.get(f"/api/runs/{run['run_id']}/audit", params={"min_position": run["position"]})
    assert answer.status_code == 200, answer.text
    assert int(answer.headers["X-Position"]) >= run["position"]
    body = answer.json()
    assert body["valid"] is True and body["events"] == 1
    assert body == audit(alice, run["run_id"]) or body["inclusion"] is None
