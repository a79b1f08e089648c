"""The user CLI (`runledger runs|tail|gates|board`) as a person at a terminal uses it: the
real command in a subprocess against a real `runledger serve`, on SQLite and PostgreSQL;
`tail` across a server killed and restarted mid-stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.board_helpers import act, board, create_task
from tests.e2e.projects_helpers import create_project
from tests.e2e.runs_helpers import append, claim, log, ok, report, submit
from tests.support import ALICE, BOB, RUNNER, Server, runledger_process


def cli(server: Server | str, *args: str, key: str | None = ALICE, stdin: str = "") -> Any:
    """`runledger ARGS` with the server and key in the environment; the finished process."""
    url = server if isinstance(server, str) else server.url
    env = {**os.environ, "RUNLEDGER_SERVER": url, "COLUMNS": "160"}
    env.pop("RUNLEDGER_KEY", None)
    if key is not None:
        env["RUNLEDGER_KEY"] = key
    return runledger_process(env, *args, stdin=stdin)


def cli_json(server: Server, *args: str, key: str = ALICE) -> Any:
    done = cli(server, *args, "--json", key=key)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(done.stdout)


def wait_listed(server: Server, run_id: str) -> dict[str, Any]:
    """The run as `runs list --json` shows it, once the read model has it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for item in cli_json(server, "runs", "list")["items"]:
            if item["run_id"] == run_id:
                return dict(item)
        time.sleep(0.1)
    raise AssertionError(f"{run_id} never listed")


def test_submit_list_show_cancel_and_retry(srv: Server) -> None:
    made = cli(srv, "runs", "submit", "fix the flaky parser test", "--max-attempts", "2")
    assert made.returncode == 0, made.stderr
    run_id, status = made.stdout.split()
    assert status == "pending"
    piped = cli(srv, "runs", "submit", "-", "--json", stdin="a task\nover two lines\n")
    assert piped.returncode == 0, piped.stderr
    second = json.loads(piped.stdout)["run_id"]

    wait_listed(srv, run_id)
    listed = wait_listed(srv, second)
    assert listed["task"] == "a task\nover two lines\n"
    table = cli(srv, "runs", "list").stdout.splitlines()
    assert table[0].split() == ["RUN", "STATUS", "UPDATED", "TASK"]
    assert table[1].startswith(second) and table[2].startswith(run_id)  # newest first
    assert "fix the flaky parser test" in table[2] and "pending" in table[2]
    assert cli(srv, "runs", "list", key=BOB).stdout.strip() == "no runs"  # alice's only
    only = cli_json(srv, "runs", "list", "--status", "cancelled")
    assert only["items"] == []

    shown = cli(srv, "runs", "show", run_id).stdout
    assert f"run:          {run_id}" in shown and "status:       pending" in shown
    assert "attempt:      1 of 2" in shown

    cancelled = cli(srv, "runs", "cancel", run_id, "--reason", "not now")
    assert cancelled.returncode == 0 and cancelled.stdout.split() == [run_id, "cancelled"]
    again = cli(srv, "runs", "cancel", run_id)
    assert again.returncode == 2
    assert "409 conflict" in again.stderr and "(the run is cancelled)" in again.stderr

    with srv.client(RUNNER) as runner:
        lease = claim(runner, second)
        report(
            runner,
            second,
            lease["fencing_token"],
            "failed",
            failure={"category": "agent", "message": "gave up"},
        )
    retried = cli(srv, "runs", "retry", second)
    assert retried.returncode == 0, retried.stderr
    assert f"(retries {second})" in retried.stdout
    assert cli(srv, "runs", "show", second, "--json").returncode == 0
    failed = cli_json(srv, "runs", "show", second, "--at-sequence", "1")
    assert failed["status"] == "pending"  # as it stood after its first event


def test_review_decisions(srv: Server) -> None:
    runs = {}
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        for name in ("approve", "decline", "changes"):
            run = submit(alice, task=f"to {name}")["run_id"]
            lease = claim(runner, run)
            report(runner, run, lease["fencing_token"], "changes", tree_hash="abcd1234")
            runs[name] = run
    approved = cli(srv, "runs", "approve", runs["approve"], "--comment", "lovely")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.split()[1] in ("merging", "merged")
    declined = cli(srv, "runs", "decline", runs["decline"])
    assert declined.stdout.split() == [runs["decline"], "declined"]
    missing = cli(srv, "runs", "request-changes", runs["changes"])
    assert missing.returncode == 2 and "--comment" in missing.stderr  # required
    sent_back = cli(srv, "runs", "request-changes", runs["changes"], "--comment", "add a test")
    assert sent_back.stdout.split() == [runs["changes"], "in_progress"]
    deadline = time.monotonic() + 10
    while (shown := cli_json(srv, "runs", "show", runs["changes"]))["revision"] != 1:
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert shown["status"] == "in_progress" and shown["review"]["comment"] == "add a test"


def test_gates_list_and_resolve(srv: Server) -> None:
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run = submit(alice, task="needs a human")["run_id"]
        token = claim(runner, run)["fencing_token"]
        gates = [
            {
                "type": "gate.opened",
                "data": {"gate_id": "g1", "kind": "question", "prompt": "Which db?"},
            },
            {
                "type": "gate.opened",
                "data": {"gate_id": "g2", "kind": "shell_approval", "prompt": "rm -rf build?"},
            },
        ]
        position = append(runner, run, token, *gates)["position"]
        ok(alice.get(f"/api/runs/{run}", params={"min_position": position}))
    listed = cli(srv, "gates", "list", run).stdout.splitlines()
    assert listed[0].split() == ["GATE", "KIND", "OPENED", "PROMPT"]
    assert any(line.startswith("g1") and "Which db?" in line for line in listed)
    answered = cli(srv, "gates", "resolve", run, "g1", "--answer", "PostgreSQL")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.startswith("gate g1 answer;")
    denied = cli_json(srv, "gates", "resolve", run, "g2", "--deny", "--scope", "run")
    assert denied["decision"] == "deny"
    twice = cli(srv, "gates", "resolve", run, "g2", "--approve")
    assert twice.returncode == 2 and "409" in twice.stderr
    with srv.client(RUNNER) as runner:  # an id that is no plain path segment
        odd = {"gate_id": "why? 50% #1", "kind": "question", "prompt": "Ready?\x1b]0;pwned\x07"}
        position = append(runner, run, token, {"type": "gate.opened", "data": odd})["position"]
    with srv.client(ALICE) as alice:
        ok(alice.get(f"/api/runs/{run}", params={"min_position": position}))
    shown = cli(srv, "gates", "list", run).stdout
    assert "why? 50% #1" in shown and "\x1b" not in shown and "\x07" not in shown
    odd_answer = cli(srv, "gates", "resolve", run, "why? 50% #1", "--answer", "yes")
    assert odd_answer.returncode == 0, odd_answer.stderr
    both = cli(srv, "gates", "resolve", run, "g1", "--approve", "--deny")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_board(srv: Server) -> None:
    with srv.client(ALICE) as alice:
        project = create_project(alice)["project_id"]
        first = create_task(alice, project, "write the parser")["task_id"]
        create_task(alice, project, "document it")
        ok(act(alice, project, first, "ready"))
        board(alice, project)  # the read model has it all
    shown = cli(srv, "board", project).stdout.splitlines()
    assert shown[0] == "BACKLOG (1)" and "document it" in shown[1]
    assert shown[2] == "READY (1)" and "write the parser" in shown[3] and first in shown[3]
    assert "IN PROGRESS (0)" in shown and "DONE (0)" in shown
    columns = cli_json(srv, "board", project)["columns"]
    assert [c["name"] for c in columns][:2] == ["backlog", "ready"]
    assert cli(srv, "board", project, key=BOB).returncode == 2  # not bob's: 404


def test_errors_and_exit_statuses(srv: Server, tmp_path: Path) -> None:
    bad_key = cli(srv, "runs", "list", key="nope")
    assert bad_key.returncode == 2 and "401 unauthorized" in bad_key.stderr
    runner_key = cli(srv, "runs", "list", key=RUNNER)
    assert runner_key.returncode == 2 and "403 forbidden" in runner_key.stderr
    no_such = cli(srv, "runs", "show", "00000000-0000-0000-0000-000000000000")
    assert no_such.returncode == 2 and "404 not_found" in no_such.stderr
    as_json = cli(srv, "runs", "show", "not-a-uuid", "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["error"] == "invalid_request"
    nobody = cli("http://127.0.0.1:9", "runs", "list")
    assert nobody.returncode == 5 and "cannot reach" in nobody.stderr
    keyless = runledger_process(
        {k: v for k, v in os.environ.items() if k != "RUNLEDGER_KEY"}
        | {"RUNLEDGER_DATA_DIR": str(tmp_path / "none")},
        *("runs", "list", "--server", srv.url),
    )
    assert keyless.returncode == 2 and "no key" in keyless.stderr
    limit = cli(srv, "runs", "list", "--limit", "0")
    assert limit.returncode == 2 and "--limit" in limit.stderr


def test_every_help_documents_its_flags_and_defaults() -> None:
    commands = [
        ["runs", "list"],
        ["runs", "show"],
        ["runs", "submit"],
        ["runs", "cancel"],
        ["runs", "approve"],
        ["runs", "decline"],
        ["runs", "request-changes"],
        ["runs", "retry"],
        ["tail"],
        ["gates", "list"],
        ["gates", "resolve"],
        ["board"],
    ]
    for words in commands:
        shown = cli("http://unused", *words, "--help", key="a-secret-key-never-shown")
        assert shown.returncode == 0, (words, shown.stderr)
        text = " ".join(shown.stdout.split())
        for flag in ("--server", "--key", "--json", "RUNLEDGER_SERVER", "RUNLEDGER_KEY"):
            assert flag in text, (words, flag)
        assert "else http://127.0.0.1:8000) (default: http://unused)" in text, words
        assert "(default: None)" not in text and "a-secret-key" not in text, words
        assert "exit status" in text, words
    tail = " ".join(cli("http://unused", "tail", "--help", key=None).stdout.split())
    assert "--give-up-after" in tail and "(default: 300.0)" in tail and "(default: 0)" in tail


def test_tail_follows_across_a_server_killed_and_restarted(srv: Server) -> None:
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run = submit(alice, task="long job")["run_id"]
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, log("first"), log("second"))

    env = {**os.environ, "RUNLEDGER_SERVER": srv.url, "RUNLEDGER_KEY": ALICE}
    tail = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "tail", run, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, Any]] = []
    got = threading.Condition()

    def read() -> None:
        assert tail.stdout is not None
        for line in tail.stdout:
            with got:
                lines.append(json.loads(line))
                got.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for(count: int) -> None:
        with got:
            assert got.wait_for(lambda: len(lines) >= count, timeout=30), lines

    try:
        wait_for(4)  # submitted, claimed, first, second
        srv.kill()  # mid-stream, no goodbye
        time.sleep(1.5)  # the tail retries meanwhile
        srv.start()
        with srv.client(RUNNER) as runner:
            append(runner, run, token, log("third"), log("fourth"))
            wait_for(6)
            report(runner, run, token, "failed", failure={"category": "agent", "message": "no"})
        code = tail.wait(timeout=60)
    finally:
        tail.kill()
        reader.join(5)
        err = tail.stderr.read() if tail.stderr else ""
        for pipe in (tail.stdout, tail.stderr):
            if pipe is not None:
                pipe.close()
    assert code == 1, err  # the run ended failed
    sequences = [event["sequence"] for event in lines]
    assert sequences == list(range(1, len(lines) + 1)), sequences  # each once, in order
    assert lines[-1]["type"] == "run.failed"
    assert "resuming after event 4" in err and f"run {run} ended failed" in err
    # started after its end: nothing to print, and still the run's outcome
    after = cli(srv, "tail", run, "--after", str(sequences[-1]))
    assert after.returncode == 1 and after.stdout == "", after.stderr
