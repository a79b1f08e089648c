#!/usr/bin/env python3
"""Benchmark a project's board over real HTTP, on SQLite and PostgreSQL.

For each store, in one run, against one `runledger serve` subprocess:

1. `GET /api/projects/{id}/board` of a project with 1,000 tasks (spread over the columns:
   backlog, ready, archived, and some started: runs pending, held, completed and failed),
   next to a trivial keyed JSON GET (`/api/server/info`: no database, a few bytes) on the
   same server in the same run, with 1 and 4 clients; ratio = board / trivial;
2. `POST …/tasks/{task_id}/reorder` from 4 clients of the project's owner on that project
   (every command contends for the one Project stream), then from 4 users each on their
   own project of as many tasks; after each window, how long the board view took to show
   the last reorder (`?min_position=`).

    .venv/bin/python scripts/bench_board.py [--quick] [--tasks 1000] [--stores sqlite,postgres]

Progress goes to stderr, the report to stdout. The exit status is 1 when a measurement failed
or a check (errors, a board that does not show its tasks) printed a warning, and 130 when
interrupted (servers, schemas and temporary files are cleaned up first).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from benchload import BenchError, Measured, Op, timed_workers
from benchreport import (
    DEFAULT_PG_URL,
    Report,
    Row,
    Setup,
    describe,
    parse_with_stores,
    planned,
    progress,
    run_benchmark,
)
from benchserver import (
    API_KEYS,
    RUNNER_KEY,
    USER_KEY,
    LeanClient,
    Server,
    cpu_mark,
    cpu_text,
)

TRIVIAL = "/api/server/info"
USERS = ((USER_KEY, "alice"), ("kb", "bob"), ("kc", "carol"), ("kd", "dave"))
KEYS = API_KEYS + ",kc=carol:user,kd=dave:user"
DESCRIPTION = "Make the thing do the other thing, and say so in the docs. " * 2
MAX_CONSECUTIVE_ERRORS = 50
# Per flag left out: (its value with --quick, without). See planned.
PLAN_DEFAULTS = {"duration": (1.5, 5.0), "warmup": (0.3, 1.0), "tasks": (200, 1000)}
SETUP = Setup(
    title="runledger board benchmark",
    packages=("uvicorn", "starlette", "eventsourcing", "psycopg", "orjson"),
    pg_shown=("synchronous_commit", "fsync"),
    legend="ratio (GET) = board requests/s / the trivial GET's at the same concurrency "
    "(target >= 0.50); reorders: commands/s answered 200; 'board +X s' = from the end of the "
    "window until GET board ?min_position=<last reorder's position> answered.",
    code=True,
    stop_workers=True,
)


@dataclass(frozen=True)
class Plan:
    """How long and how hard to push."""

    duration: float
    warmup: float
    tasks: int
    readers: tuple[int, ...] = (1, 4)
    writers: int = 4
    own_projects: bool = True

    def summary(self) -> str:
        """The plan as the header's `plan:` line says it."""
        return (
            f"{self.tasks} tasks per board; {self.warmup:g} s warm-up + {self.duration:g} s per "
            f"case; GET with {'/'.join(map(str, self.readers))} clients; reorders from "
            f"{self.writers} clients on one project"
            + (f", then {self.writers} users on their own projects" if self.own_projects else "")
            + "; one keep-alive connection per client (LeanClient); the load generator shares "
            "the machine with the server"
        )


@dataclass
class Board:
    """A project the benchmark made: its owner's key, its backlog, the last position."""

    project_id: str
    key: str
    backlog: list[str] = field(default_factory=list)
    position: int = 0

    @property
    def path(self) -> str:
        """The board's GET path."""
        return f"/api/projects/{self.project_id}/board"


def call(client: LeanClient, path: str, body: object = None, status: int = 200) -> dict:
    """POST (a JSON body) and check the status; the answer's JSON."""
    got, answer = client.post(path, orjson.dumps(body or {}))
    if got != status:
        raise BenchError(f"POST {path}: {got} {answer[:300]!r}")
    return dict(orjson.loads(answer)) if answer else {}


# -- setup -------------------------------------------------------------------------------------


def make_board(server: Server, key: str, tasks: int, spread: bool) -> Board:
    """A project of `tasks` tasks; `spread`: 40 % ready, 5 % archived, 30 started."""
    client = LeanClient(server, key)
    try:
        project = call(client, "/api/projects", {"name": f"board {key}"}, 201)
        board = Board(project["project_id"], key)
        base = f"/api/projects/{board.project_id}/backlog/tasks"
        ready: list[str] = []
        for i in range(tasks):
            body = {"title": f"task {i}", "description": DESCRIPTION}
            task = call(client, base, body, 201)
            board.position = max(board.position, int(task["position"]))
            kind = i % 20
            if spread and kind < 8:
                call(client, f"{base}/{task['task_id']}/ready")
                ready.append(task["task_id"])
            elif spread and kind == 8:
                call(client, f"{base}/{task['task_id']}/archive")
            else:
                board.backlog.append(task["task_id"])
        if spread:
            start_some(server, client, base, ready[:30])
            client.close()  # idle while the runner claimed: the server may have closed it
        board.position = max(
            board.position,
            int(
                call(
                    client,
                    f"{base}/{board.backlog[0]}/reorder",
                    {"after_task_id": board.backlog[1]},
                )["position"]
            ),
        )
        board.backlog[0], board.backlog[1] = board.backlog[1], board.backlog[0]
        return board
    finally:
        client.close()


def start_some(server: Server, client: LeanClient, base: str, task_ids: list[str]) -> None:
    """Start the tasks; of their runs, 10 complete, 5 fail, 5 are held, the rest pend."""
    for task_id in task_ids:
        call(client, f"{base}/{task_id}/start", status=202)
    runner = LeanClient(server, RUNNER_KEY)
    try:
        for k in range(min(20, len(task_ids))):
            lease = claim(runner)
            run_id, token = lease["run"]["run_id"], lease["fencing_token"]
            if k < 10:
                body: dict = {"fencing_token": token, "outcome": "no_changes"}
            elif k < 15:
                failure = {"category": "agent", "message": "the benchmark failed it"}
                body = {"fencing_token": token, "outcome": "failed", "failure": failure}
            else:
                continue  # held: in progress
            call(runner, f"/api/runs/{run_id}/report", body)
    finally:
        runner.close()


def claim(runner: LeanClient, patience: float = 600.0) -> dict:
    """The next claimable run's lease (its run may wait for a busy read model first)."""
    deadline = time.monotonic() + patience
    body = orjson.dumps({"runner_id": "bench", "wait_seconds": 20})
    while True:
        status, answer = runner.post("/api/runner/claim", body)
        if status == 200:
            return dict(orjson.loads(answer))
        if status != 204 or time.monotonic() > deadline:
            raise BenchError(f"POST /api/runner/claim: {status} {answer[:300]!r}")


def caught_up(server: Server, board: Board) -> tuple[float, dict]:
    """Seconds until GET board ?min_position= answers for the board's last position."""
    client = LeanClient(server, board.key)
    started = time.perf_counter()
    try:
        while True:
            status, answer = client.get(f"{board.path}?min_position={board.position}")
            if status == 200:
                return time.perf_counter() - started, orjson.loads(answer)
            if status != 503 or time.perf_counter() - started > 900:
                raise BenchError(f"GET board: {status} {answer[:300]!r}")
    finally:
        client.close()


# -- the measurements --------------------------------------------------------------------------


def gets(server: Server, key: str, path: str, n: int, plan: Plan) -> Measured:
    """n clients, each one GET after another."""

    def open_worker(_: int) -> tuple[Op, Op]:
        client = LeanClient(server, key)

        def op() -> None:
            status, answer = client.get(path)
            if status != 200:
                raise BenchError(f"GET {path}: {status} {answer[:200]!r}")

        return op, client.close

    return timed_workers(n, open_worker, plan.warmup, plan.duration, MAX_CONSECUTIVE_ERRORS)


def reorders(server: Server, boards: list[Board], plan: Plan) -> Measured:
    """One reorder after another per client (client i on boards[i % len]): a random task
    of the backlog right before another."""
    lock = threading.Lock()

    def open_worker(i: int) -> tuple[Op, Op]:
        board = boards[i % len(boards)]
        client = LeanClient(server, board.key)
        rng = random.Random(i)
        base = f"/api/projects/{board.project_id}/backlog/tasks"

        def op() -> None:
            task_id, before = rng.sample(board.backlog, 2)
            answer = call(client, f"{base}/{task_id}/reorder", {"before_task_id": before})
            with lock:
                board.position = max(board.position, int(answer["position"]))

        return op, client.close

    return timed_workers(
        plan.writers, open_worker, plan.warmup, plan.duration, MAX_CONSECUTIVE_ERRORS
    )


def check_board(store: str, doc: dict, tasks: int, report: Report) -> str:
    """The board's shape, for the notes; a warning when it does not show its tasks."""
    counts = {c["name"]: len(c["tasks"]) for c in doc["columns"]}
    shown = sum(counts.values())
    expected = tasks - len(range(8, tasks, 20))  # all but the archived
    if shown != expected:
        report.warn(f"{store}: the board shows {shown} tasks, expected {expected}")
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def reorder_case(
    server: Server, store: str, boards: list[Board], plan: Plan, report: Report
) -> None:
    """Reorders from plan.writers clients on these boards, then the board view's lag."""
    users = "1 user" if len(boards) == 1 else f"{len(boards)} users"
    progress(f"{store}: reorders, {plan.writers} clients of {users}")
    mark = cpu_mark(server)
    m = reorders(server, boards, plan)
    end = cpu_mark(server)
    wait = max(caught_up(server, board)[0] for board in boards)
    server.check_alive()
    notes = f"{describe(m, 'lat')}; {cpu_text(mark, end, (m.total, 'cmd'))}; board +{wait:.2f} s"
    measure = f"POST reorder ({users}, {plan.tasks} tasks each)"
    report.rows.append(Row(store, measure, str(plan.writers), f"{m.rate:,.0f} cmd/s", notes=notes))
    if m.errors or not m.count:
        report.warn(f"{store} {measure}: {m.errors} errors, first: {m.first_error}")


def bench_store(
    store: str, url: str, tmp: Path, plan: Plan, args: argparse.Namespace, report: Report
) -> None:
    """The board's GET beside the trivial one, then reorders, for one store."""
    server = Server(url, tmp / "data", root=args.code_dir)
    server.env["RUNLEDGER_API_KEYS"] = KEYS
    progress(f"{store}: starting runledger serve ({url})")
    try:
        server.start_for(store)
        progress(f"{store}: making a board of {plan.tasks} tasks")
        mark = cpu_mark(server)
        board = make_board(server, USER_KEY, plan.tasks, spread=True)
        made = cpu_mark(server)
        wait, doc = caught_up(server, board)
        size = len(orjson.dumps(doc))
        report.notes.append(
            f"{store}: setup: {plan.tasks} creates + {int(plan.tasks * 0.45)} moves + 30 starts "
            f"from 1 client in {made[0] - mark[0]:.1f} s ({cpu_text(mark, made)}), board view "
            f"+{wait:.2f} s; the board: {check_board(store, doc, plan.tasks, report)} "
            f"({size / 1000:.0f} kB)"
        )

        for n in plan.readers:
            rates = {}
            for name, path in (("trivial", TRIVIAL), ("board", board.path)):
                progress(f"{store}: GET {name}, {n} client(s)")
                mark = cpu_mark(server)
                m = gets(server, USER_KEY, path, n, plan)
                cpu = cpu_text(mark, cpu_mark(server), (m.total, "req"))
                server.check_alive()
                rates[name] = m.rate
                trivial = name == "trivial"
                measure = (
                    f"GET {TRIVIAL} (trivial)" if trivial else f"GET board ({plan.tasks} tasks)"
                )
                row = Row(
                    store,
                    measure,
                    str(n),
                    f"{m.rate:,.0f} req/s",
                    notes=f"{describe(m, 'lat')}; {cpu}",
                )
                if name == "board":
                    row.baseline = f"{rates['trivial']:,.0f} req/s"
                    row.ratio = f"{m.rate / rates['trivial']:.2f}" if rates["trivial"] else "n/a"
                report.rows.append(row)
                if m.errors or not m.count:
                    report.warn(f"{store} GET {name} ({n}): {m.errors} errors {m.first_error}")

        reorder_case(server, store, [board], plan, report)
        if plan.own_projects:
            progress(f"{store}: making {plan.writers - 1} more boards of {plan.tasks} tasks")
            mark = cpu_mark(server)
            others = [
                make_board(server, key, plan.tasks, spread=False)
                for key, _ in USERS[1 : plan.writers]
            ]
            made = cpu_mark(server)
            wait = max(caught_up(server, other)[0] for other in others)
            report.notes.append(
                f"{store}: {len(others)} more boards of {plan.tasks} tasks (all in the backlog) "
                f"in {made[0] - mark[0]:.1f} s ({cpu_text(mark, made)}), board view +{wait:.2f} s"
            )
            reorder_case(server, store, [board, *others], plan, report)
    finally:
        server.stop()
        report.server_findings += [
            f"{store}: {line}" for line in server.findings(drop_timestamps=True)
        ]


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="seconds per window (5)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per window (1)")
    parser.add_argument("--tasks", type=int, help="tasks per board (1000)")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL URL (a schema is made)"
    )
    parser.add_argument(
        "--one-project", action="store_true", help="skip the own-projects reorder case"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    return parse_with_stores(parser, argv)


def main(argv: list[str] | None = None) -> int:
    """Run every measurement on every requested store and print the report."""
    args = parse_args(argv)
    plan = Plan(**planned(args, PLAN_DEFAULTS), own_projects=not args.one_project)

    def bench(store: str, url: str, workdir: Path, report: Report) -> None:
        bench_store(store, url, workdir, plan, args, report)

    return run_benchmark(SETUP, args.stores, args.pg_url, plan.summary(), bench, args.code_dir)


if __name__ == "__main__":
    sys.exit(main())
