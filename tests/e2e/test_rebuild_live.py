"""`runledger projections rebuild` against a running server's database, on both stores.

Done when (issue 11): four clients keep issuing commands (runs, board tasks, claims and
reports through a runner key) and reading (a run, the runs of their project, their board)
while the rebuild runs as another process; no read fails (no 5xx, no 404 for a run the
client made and saw), none sees a half-built model (a listing or a board without
something the client saw there before, read with min_position), and once caught up the
rebuilt tables equal a projection of the same log from scratch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from adapters import readmodels
from tests.e2e.helpers import wait_for
from tests.serve import ROOT
from tests.support import ALICE, BOB, RUNNER, Server, open_runtime

CLIENTS = 4


class Broken(Exception):
    """A client met what it must never meet; the problem is on the list."""


class Client:
    """One user's client in a thread of its own: a project, its runs and its board tasks."""

    def __init__(self, server: Server, key: str, name: str, problems: list[str]) -> None:
        self.http = server.client(key)
        self.runner = server.client(RUNNER)
        self.name = name
        self.problems = problems
        self.runs: list[str] = []  # made and seen, oldest first
        self.tasks: list[str] = []
        self.rounds = 0

    def expect(self, response: httpx.Response, status: int) -> Any:
        if response.status_code != status:
            what = f"{response.request.method} {response.request.url.path}"
            self.problems.append(f"{self.name}: {what} -> {response.status_code} {response.text}")
            raise Broken
        return response.json() if response.content else None

    def play(self, stop: threading.Event) -> None:
        try:
            project = self.expect(self.http.post("/api/projects", json={"name": self.name}), 201)
            pid = project["project_id"]
            while not stop.is_set():
                self.round(pid)
                self.rounds += 1
        except Broken:
            pass
        except Exception as exc:  # an unexpected failure is a problem too, not a hang
            self.problems.append(f"{self.name}: {exc!r}")
        finally:
            self.http.close()
            self.runner.close()

    def round(self, pid: str) -> None:
        made = self.expect(self.http.post(f"/api/projects/{pid}/runs", json={"task": "t"}), 202)
        at = {"min_position": made["position"]}
        self.expect(self.http.get(f"/api/runs/{made['run_id']}", params=at), 200)
        self.runs.append(made["run_id"])
        listed = self.expect(
            self.http.get("/api/runs", params={**at, "project_id": pid, "limit": 500}), 200
        )
        missing = set(self.runs) - {item["run_id"] for item in listed["items"]}
        if missing:
            self.problems.append(f"{self.name}: the listing lacks {len(missing)} seen runs")
            raise Broken
        tasks = f"/api/projects/{pid}/backlog/tasks"
        task_id = self.expect(self.http.post(tasks, json={"title": "x"}), 201)["task_id"]
        self.expect(self.http.post(f"{tasks}/{task_id}/ready", json={}), 200)
        started = self.expect(self.http.post(f"{tasks}/{task_id}/start", json={}), 202)
        self.tasks.append(task_id)
        board = self.expect(
            self.http.get(
                f"/api/projects/{pid}/board", params={"min_position": started["position"]}
            ),
            200,
        )
        shown = {task["task_id"] for column in board["columns"] for task in column["tasks"]}
        if set(self.tasks) - shown:
            self.problems.append(f"{self.name}: the board lacks tasks it showed before")
            raise Broken
        claimed = self.runner.post("/api/runner/claim", json={"runner_id": self.name})
        if claimed.status_code != 204:
            lease = self.expect(claimed, 200)
            report = {"fencing_token": lease["fencing_token"], "outcome": "changes"}
            self.expect(
                self.runner.post(f"/api/runs/{lease['run']['run_id']}/report", json=report), 200
            )
        self.expect(self.http.get(f"/api/runs/{self.runs[0]}"), 200)


def rebuild_cli(url: str, data_dir: Path, *args: str) -> str:
    """`runledger projections rebuild …` as another process; its output (fails on non-zero)."""
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "projections", "rebuild", *args, "--database", url],
        cwd=ROOT,
        env={**os.environ, "RUNLEDGER_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def tables(url: str, data_dir: Path, from_scratch: bool) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model table's rows (after projecting the log from nothing, if asked)."""
    runtime = open_runtime(url, data_dir)
    try:
        if from_scratch:
            runtime.projection.rebuild()
        found = {}
        with runtime.db.reading() as cur:
            for table in (*readmodels.READ_MODEL_TABLES, "projection_tracking"):
                rows = cur.execute(f"SELECT * FROM {table}").fetchall()
                found[table] = sorted(tuple(str(v) for v in row) for row in rows)
        return found
    finally:
        runtime.close()


def test_a_rebuild_beside_a_busy_server_disturbs_no_reader_and_equals_a_fresh_projection(
    store_url: str, tmp_path: Path
) -> None:
    server = Server(store_url, tmp_path / "data").start()
    try:
        problems: list[str] = []
        stop = threading.Event()
        clients = [
            Client(server, (ALICE, BOB)[i % 2], f"client-{i}", problems) for i in range(CLIENTS)
        ]
        threads = [threading.Thread(target=c.play, args=(stop,)) for c in clients]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: all(c.rounds >= 3 for c in clients) or bool(problems), 60, "traffic")
            said = rebuild_cli(store_url, tmp_path / "cli")
            assert "read models rebuilt up to position" in said
            said = rebuild_cli(store_url, tmp_path / "cli", "board")
            assert "board rebuilt up to position" in said
            rounds = [c.rounds for c in clients]
            wait_for(
                lambda: (
                    all(c.rounds > r for c, r in zip(clients, rounds, strict=True))
                    or bool(problems)
                ),
                60,
                "traffic after the rebuilds",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert problems == []
        with server.client(ALICE) as alice:
            info = alice.get("/api/diagnostics").json()
            head = int(info["head_position"])
            # read-your-writes at the head: the server's projector caught up after the swap
            wait_for(
                lambda: alice.get("/api/runs", params={"min_position": head}).status_code == 200,
                30,
                "the read models to reach the head",
            )
        assert server.stop() == 0
    finally:
        server.kill()
    assert tables(store_url, tmp_path / "check", False) == tables(
        store_url, tmp_path / "check", True
    )
