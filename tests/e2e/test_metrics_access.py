"""/metrics shows counts across every user: it takes a user key unless made public."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import ALICE, RUNNER, Server


def test_metrics_without_a_key_are_refused(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        answer = anonymous.get("/metrics")
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"


def test_metrics_with_a_runner_key_are_refused(server: Server) -> None:
    with server.client(RUNNER) as runner:
        assert runner.get("/metrics").status_code == 403


def test_metrics_with_a_user_key_are_served(server: Server) -> None:
    with server.client(ALICE) as alice:
        answer = alice.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert "runledger_sse_subscribers" in answer.text


def test_metrics_made_public_need_no_key(store_url: str, tmp_path: Path) -> None:
    srv = Server(store_url, tmp_path / "data", RUNLEDGER_METRICS_PUBLIC="true").start()
    try:
        with httpx.Client(base_url=srv.url) as anonymous:
            answer = anonymous.get("/metrics")
        assert answer.status_code == 200, answer.text
    finally:
        srv.kill()
