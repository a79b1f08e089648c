"""Operations endpoints: health, server info, diagnostics, metrics."""

from __future__ import annotations

import time

import httpx

from tests.support import ALICE, Server


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
