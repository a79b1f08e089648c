"""The OpenAPI 3.1 document: generated from every route of the app, valid, served with a key
at /api/openapi.json and rendered at /api/docs; real answers of a walk through the API
conform to it; and a bounded schemathesis run against a live server finds no 5xx."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount

from api.config import Config
from api.http.app import create_app
from api.http.openapi import document, endpoints
from tests.e2e.openapi_check import Contract
from tests.e2e.runs_helpers import append, claim, log, ok, report, submit
from tests.support import ALICE, BOB, RUNNER, Server

SCHEMATHESIS_SECONDS = int(os.environ.get("RUNLEDGER_SCHEMATHESIS_SECONDS", "90"))


def app_document(tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    app = create_app(Config(database_url=f"sqlite:///{tmp_path / 'x.db'}", data_dir=tmp_path))
    return app, document(app.routes, "test")


def test_every_route_of_the_app_is_in_the_document_and_it_validates(tmp_path: Path) -> None:
    app, doc = app_document(tmp_path)
    validate(doc)  # OpenAPI 3.1, its schemas JSON Schema 2020-12
    assert doc["openapi"] == "3.1.0"
    routes = {
        (method, route.path.replace(":path}", "}"))
        for route in app.routes
        if not isinstance(route, Mount)
        for method in route.methods - {"HEAD"}
    }
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert routes == documented
    assert len(endpoints(app.routes)) == len(routes)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operationIds are unique"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            where = f"{method} {path}"
            assert op["summary"] and op["tags"], where
            assert op["responses"], where
            schemes = {name for requirement in op["security"] for name in requirement}
            assert schemes <= {"bearer", "session"}, where
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    # the error model, the auth schemes and the streams
    assert "ErrorBody" in doc["components"]["schemas"]
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "session"}
    stream = doc["paths"]["/api/runs/{run_id}/stream"]["get"]["responses"]
    assert "text/event-stream" in stream["200"]["content"] and "204" in stream
    assert doc["paths"]["/health"]["get"]["security"] == []


@pytest.fixture(scope="module")
def srv(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tests.support import fresh_store

    base = tmp_path_factory.mktemp(f"openapi-{store_kind}")
    with fresh_store(store_kind, base) as url:
        server = Server(url, base / "data", RUNLEDGER_LEASE_SECONDS="3600").start()
        try:
            yield server
        finally:
            server.kill()


def test_the_document_is_served_with_a_key_and_rendered_for_people(srv: Server) -> None:
    with srv.client(ALICE) as alice, httpx.Client(base_url=srv.url, timeout=30) as anonymous:
        served = ok(alice.get("/api/openapi.json"))
        validate(served)
        assert anonymous.get("/api/openapi.json").status_code == 401
        with srv.client(RUNNER) as runner:
            ok(runner.get("/api/openapi.json"))
        page = anonymous.get("/api/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for asset in ("/api/docs/assets/swagger-ui-bundle.js", "/api/docs/assets/swagger-ui.css"):
            assert anonymous.get(asset).status_code == 200, asset
        assert "swagger-ui-bundle.js" in page.text and "http" not in page.text.split("<body>")[1]


def test_real_answers_conform_to_the_document(srv: Server) -> None:
    with srv.client(ALICE) as alice:
        contract = Contract(ok(alice.get("/api/openapi.json")))
    hooks = {"response": [contract.check]}
    with (
        srv.client(ALICE, event_hooks=hooks) as alice,
        srv.client(BOB, event_hooks=hooks) as bob,
        srv.client(RUNNER, event_hooks=hooks) as runner,
        httpx.Client(base_url=srv.url, timeout=30, event_hooks=hooks) as anonymous,
    ):
        walk(alice, bob, runner, anonymous)
    operations = {(m.upper(), p) for p, item in contract.document["paths"].items() for m in item}
    reached = {(m, p) for m, p, _ in contract.checked}
    # The walk reaches most operations; the rest are covered by the schemathesis run.
    assert len(reached) >= 0.6 * len(operations), sorted(operations - reached)


def walk(alice: httpx.Client, bob: httpx.Client, runner: httpx.Client, anon: httpx.Client) -> None:
    """A tour of the API that meets successes and the usual errors."""
    anon.get("/health")
    anon.get("/api/server/info")
    anon.get("/api/runs")  # 401
    alice.get("/api/diagnostics")
    alice.get("/metrics")

    run = submit(alice, task="walk the api")
    run_id = run["run_id"]
    alice.get("/api/runs", params={"min_position": run["position"]})
    alice.get(f"/api/runs/{run_id}", params={"min_position": run["position"]})
    alice.get(f"/api/runs/{run_id}", params={"at_sequence": 1})
    alice.get(f"/api/runs/{run_id}", params={"at_sequence": 99})  # 404
    bob.get(f"/api/runs/{run_id}")  # 404: not bob's
    alice.get("/api/runs/not-a-uuid")  # 400
    alice.post("/api/runs", json={"task": 7})  # 400
    token = claim(runner, run_id)["fencing_token"]
    runner.post("/api/runner/claim", json={"runner_id": "r2", "wait_seconds": 0})  # 204
    gate = {"gate_id": "g1", "kind": "question", "prompt": "Which?"}
    append(runner, run_id, token, log("one"), {"type": "gate.opened", "data": gate})
    alice.get(f"/api/runs/{run_id}/events")
    alice.get("/api/events", params={"run_id": run_id})
    alice.post(f"/api/runs/{run_id}/gates/g1", json={"decision": "answer", "answer": "A"})
    alice.post(f"/api/runs/{run_id}/gates/g1", json={"decision": "answer", "answer": "A"})  # 409
    alice.post(f"/api/runs/{run_id}/auto-approve", json={"enabled": True})
    alice.post(f"/api/runs/{run_id}/pause", json={})
    alice.post(f"/api/runs/{run_id}/resume", json={})
    alice.get("/api/runners")
    alice.post(f"/api/runs/{run_id}/steer", json={"kind": "amend", "instruction": "be quick"})
    report(runner, run_id, token, "changes", tree_hash="abcd1234")
    alice.get(f"/api/runs/{run_id}/files")  # 404: no repository
    alice.post(f"/api/runs/{run_id}/review", json={"approved": True})
    alice.get(f"/api/runs/{run_id}/usage")
    alice.get(f"/api/runs/{run_id}/audit")
    alice.get("/api/audit/checkpoint")
    alice.get("/api/audit/public-key")

    failed = submit(alice, task="to fail")["run_id"]
    lease = claim(runner, failed)
    runner.post(f"/api/runner/leases/{lease['lease_id']}/heartbeat")
    report(
        runner,
        failed,
        lease["fencing_token"],
        "failed",
        failure={"category": "agent", "message": "no"},
    )
    retried = alice.post(f"/api/runs/{failed}/retry", json={})
    alice.post(f"/api/runs/{retried.json()['run_id']}/cancel", json={"reason": "enough"})
    alice.post(f"/api/runs/{failed}/archive", json={})
    alice.delete(f"/api/runs/{failed}")

    project = alice.post("/api/projects", json={"name": "walk"}).json()
    pid = project["project_id"]
    alice.get("/api/projects")
    alice.get(f"/api/projects/{pid}")
    alice.patch(f"/api/projects/{pid}", json={"name": "walked"})
    task = alice.post(f"/api/projects/{pid}/backlog/tasks", json={"title": "a task"}).json()
    tasks = f"/api/projects/{pid}/backlog/tasks"
    alice.patch(f"{tasks}/{task['task_id']}", json={"description": "more"})
    alice.post(f"{tasks}/{task['task_id']}/ready", json={})
    alice.post(f"{tasks}/{task['task_id']}/backlog", json={})
    other = alice.post(tasks, json={"title": "another"}).json()
    alice.post(f"{tasks}/{other['task_id']}/reorder", json={"before_task_id": task["task_id"]})
    alice.get(f"/api/projects/{pid}/board")
    alice.get(f"/api/projects/{pid}/usage")
    alice.post(f"/api/projects/{pid}/runs", json={"task": "in the project"})
    alice.get(f"/api/projects/{pid}/runs")
    alice.delete(f"{tasks}/{other['task_id']}")
    alice.delete(f"/api/projects/{pid}", params={"confirm": "true"})

    coordinator = submit(alice, task="plan it")["run_id"]
    plan = {"subtasks": [{"key": "a", "title": "A", "depends_on": []}]}
    alice.put(f"/api/runs/{coordinator}/work-plan", json=plan)
    alice.get(f"/api/runs/{coordinator}/work-plan")
    alice.get(f"/api/runs/{coordinator}/children")
    alice.get(f"/api/runs/{coordinator}/graph")

    anon.post("/api/session", json={"key": ALICE})
    anon.delete("/api/session", headers={"X-Requested-With": "runledger"})


def test_a_bounded_schemathesis_run_finds_no_server_error(srv: Server, tmp_path: Path) -> None:
    """Schemathesis generates requests for every operation from the document, valid and
    not, for a bounded time, with a user key, then the runners' operations with a runner
    key; no answer may be a 5xx, and every answer must match the document's schemas."""
    half = SCHEMATHESIS_SECONDS // 2
    schemathesis(srv, tmp_path / "user", ALICE, half)
    schemathesis(srv, tmp_path / "runner", RUNNER, half, "--include-tag", "runners")


def schemathesis(srv: Server, reports: Path, key: str, seconds: int, *only: str) -> None:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{srv.url}/api/openapi.json",
        *only,
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--max-examples",
        "25",
        "--max-time",
        str(seconds),
        "--seed",
        "7",
        "--workers",
        "1",  # hypothesis's lambda descriptions are not thread-safe on Python 3.11
        "--no-color",
        "--report-dir",
        str(reports),
    ]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 120, env=env, cwd=root
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "Server error" not in output, output[-6000:]
