"""Operations endpoints: health, server info, diagnostics, metrics."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.serve import ROOT
from tests.support import ALICE, Server, runledger_process


def test_health_and_info_are_public_and_metrics_truthful(server: Server) -> None:
    with server.client(ALICE) as alice, httpx.Client(base_url=server.url) as anonymous:
        submitted = alice.post("/api/runs", json={"task": "t"}).json()
        health = anonymous.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        info = anonymous.get("/api/server/info").json()
        assert info["store"] in ("sqlite", "postgres") and info["version"]
        assert anonymous.get("/api/diagnostics").status_code == 401

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = alice.get("/metrics").text
            if 'runledger_events_total{type="run.submitted"} 1' in text:
                break
            time.sleep(0.05)
        assert 'runledger_events_total{type="run.submitted"} 1' in text
        assert "runledger_command_seconds_count 1" in text
        assert 'runledger_command_seconds_bucket{le="+Inf"} 1' in text
        assert "runledger_sse_subscribers 0" in text
        assert "runledger_read_model_lag_positions" in text

        diagnostics = alice.get("/api/diagnostics").json()
        assert diagnostics["head_position"] >= submitted["position"]
        assert diagnostics["subscribers"] == 0


def gen0_collections(client: httpx.Client) -> int:
    text = client.get("/metrics").text
    [line] = [
        x
        for x in text.splitlines()
        if x.startswith('runledger_gc_collections_total{generation="0"}')
    ]
    return int(line.split()[-1])


def churn(client: httpx.Client) -> None:
    for _ in range(150):
        assert client.post("/api/runs", json={"task": "churn"}).status_code == 202


@pytest.mark.parametrize(("threshold", "collects"), [("100", True), ("10000000", False)])
def test_the_collectors_thresholds_are_set_and_its_work_counted(
    store_url: str, tmp_path: Path, threshold: str, collects: bool
) -> None:
    # A young-generation threshold of 100 collects many times over 150 requests; one that
    # no few requests reach, never.
    server = Server(store_url, tmp_path / "data", RUNLEDGER_GC_THRESHOLD=threshold).start()
    try:
        with server.client(ALICE) as alice:
            churn(alice)
            assert (gen0_collections(alice) > 0) is collects
            text = alice.get("/metrics").text
        for generation in "012":
            for name in ("seconds_total", "collections_total", "longest_pause_seconds"):
                assert f'runledger_gc_{name}{{generation="{generation}"}}' in text
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("value", "command"),
    [
        ("many", ["serve", "--port", "0"]),
        ("700,10,10,10", ["serve", "--port", "0"]),
        ("-1", ["serve", "--port", "0"]),
        ("700;10", ["serve", "--port", "0"]),
        ("99999999999", ["serve", "--port", "0"]),
        ("many", ["verify"]),
    ],
)
def test_a_malformed_collector_threshold_is_refused_at_start(
    value: str, command: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLEDGER_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "RUNLEDGER_GC_THRESHOLD": value,
        "RUNLEDGER_DATA_DIR": str(tmp_path),
    }
    done = runledger_process(env, *command)
    assert done.returncode == 2, done.stderr
    assert "RUNLEDGER_GC_THRESHOLD wants" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runledger.db").exists()  # refused before anything was opened
