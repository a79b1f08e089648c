"""Two users change one project's board at the same moment, step after step: whatever they
do and however their commands race on the Project's version, the board holds every live
task exactly once, each task shows where its run really is, and the read model built along
the way (in small batches, by two processes in turn) equals one rebuilt from the whole log.

Each step runs one command per user in two threads released together by a barrier: either
freely, or with the second user's whole command placed at a chosen point of the first's:
right after it loads the project (its decision is then stale, so its save must conflict and
the engine's load-decide-save loop decide again on the new state), or right after it saves
project events (between a start's record and the making of its run). The two users are two
runtimes on one database, as two server processes would be: within one engine, commands on
one aggregate take turns and never conflict.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from adapters import readmodels
from api.config import Config
from api.service.runtime import Runtime
from domain.board import ACTIVE_RUN, ARCHIVED, BACKLOG, COLUMNS, FAILED_RUN, READY, shown_column
from domain.errors import DomainError, NotFound
from domain.projects import Project
from tests.support import postgres_schema

OWNER, RUNNER = "alice", "runner-1"
MAX_TASKS = 8
WAIT = 60.0  # seconds a thread waits for the other before the step is declared stuck

task = st.integers(0, MAX_TASKS - 1)
# Any board command or run outcome on any task (a deleted one too): many are refused.
anything = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(["fix it", "ünïcode ✓", "x"])),
    st.tuples(
        st.just("edit"),
        task,
        st.sampled_from([None, "renamed", "fix it"]),
        st.sampled_from([None, "", "why\nand how"]),
    ),
    st.tuples(st.just("move"), task, st.sampled_from(COLUMNS)),
    st.tuples(st.just("reorder"), task, task, st.booleans()),
    st.tuples(st.just("delete"), task),
    st.tuples(st.just("start"), task),
    st.tuples(st.just("claim"), task),
    st.tuples(st.just("report"), task, st.sampled_from(["changes", "no_changes", "failed"])),
    st.tuples(st.just("review"), task, st.sampled_from(["approve", "decline", "changes"])),
    st.tuples(st.just("cancel"), task),
    st.tuples(st.just("catch_up")),
)
# The next thing a task's state allows, so that tasks get started and their runs end.
advance = st.tuples(st.just("advance"), task, st.integers(0, 7))


@st.composite
def actions(draw: st.DrawFn) -> tuple[Any, ...]:
    """Half the actions advance a task (`one_of` would dilute them among the others)."""
    return draw(anything if draw(st.booleans()) else advance)


creates = st.tuples(st.just("create"), st.just("first"))
# A step: the first user's action, the second's, and how they meet: freely, or the second's
# whole command right after the first's loads the project ("stale": the first's save must
# conflict), or right after the first's saves project events ("between": a start's record
# and the making of its run).
steps = st.tuples(actions(), actions(), st.sampled_from(["free", "stale", "between"]))
histories = st.builds(
    lambda first, rest: first + rest,
    st.lists(st.tuples(creates, creates, st.just("free")), min_size=1, max_size=2),
    st.lists(steps, min_size=4, max_size=22),
)


class Hold:
    """Holds a user's command at one point (`where`: right after it loads the project, or
    right after it saves project events) until the other user's command is done."""

    def __init__(self) -> None:
        self.where: str | None = None
        self.loaded_version: int | None = None
        self.reached = threading.Event()
        self.done = threading.Event()

    def arm(self, where: str | None) -> None:
        self.where, self.loaded_version = where, None
        self.reached.clear()
        self.done.clear()

    def here(self, where: str, project: Project) -> None:
        if self.where == where:
            self.where = None
            self.loaded_version = project.version if where == "load" else None
            self.reached.set()
            assert self.done.wait(WAIT), "the other user's command never finished"


@dataclass
class User:
    """One user's process: its runtime, and what its engine's saves met."""

    runtime: Runtime
    hold: Hold = field(default_factory=Hold)
    saves: list[tuple[str, bool]] = field(default_factory=list)  # (aggregate kind, conflicted)

    def __post_init__(self) -> None:
        engine = self.runtime.engine
        load, save = engine.get_project, engine._save

        def held_load(*args: Any, **kwargs: Any) -> Project:
            project = load(*args, **kwargs)
            self.hold.here("load", project)
            return project

        def counted_save(aggregate: Any) -> Any:
            kind = "project" if isinstance(aggregate, Project) else "run"
            if not aggregate.pending_events:
                return save(aggregate)
            try:
                appended = save(aggregate)
            except Exception:
                self.saves.append((kind, True))
                raise
            self.saves.append((kind, False))
            if kind == "project":
                self.hold.here("save", aggregate)
            return appended

        engine.get_project = held_load  # type: ignore[method-assign]
        engine._save = counted_save  # type: ignore[method-assign]


@dataclass
class Board:
    """The scene: one project, two users, the tasks made and deleted, the runs started."""

    users: tuple[User, User]
    project_id: UUID
    tasks: list[str] = field(default_factory=list)  # every task ever made, in order
    deleted: set[str] = field(default_factory=set)
    runs: set[UUID] = field(default_factory=set)
    leases: dict[UUID, int] = field(default_factory=dict)  # run → its latest fencing token
    lock: threading.Lock = field(default_factory=threading.Lock)

    def project(self) -> Project:
        return self.users[0].runtime.engine.get_project(self.project_id)

    def task_id(self, index: int) -> str | None:
        return self.tasks[index % len(self.tasks)] if self.tasks else None

    def command(self, user: User, action: tuple[Any, ...]) -> tuple[Callable[[], Any], bool]:
        """What the action does, decided on the board as it is now, and whether it is a
        project command; the command returns a new task's id, a deleted one's, or None."""
        engine, pid = user.runtime.engine, self.project_id
        name, *args = action
        if name == "create":
            return lambda: (
                "made",
                list(engine.create_task(pid, OWNER, args[0], "")[0].tasks)[-1],
            ), True
        if name == "catch_up":
            return user.runtime.projection.catch_up, False
        task_id = self.task_id(args[0])
        if task_id is None:
            return lambda: None, False
        if name == "advance":
            name, args = self.next_step(task_id, args[1])
        if name == "edit":
            changes = {
                k: v
                for k, v in zip(("title", "description"), args[1:], strict=True)
                if v is not None
            }
            return lambda: engine.edit_task(pid, OWNER, task_id, changes), True
        if name == "move":
            return lambda: engine.move_task(pid, OWNER, task_id, args[-1]), True
        if name == "reorder":
            other = self.task_id(args[1])
            before, after = (other, None) if args[2] else (None, other)
            return lambda: engine.reorder_task(pid, OWNER, task_id, before, after), True
        if name == "delete":
            return lambda: (engine.delete_task(pid, OWNER, task_id), ("deleted", task_id))[1], True
        if name == "start":
            return lambda: ("started", engine.start_task(pid, OWNER, task_id).run_id), True
        run_id = self.run_of(task_id)
        if run_id is None:
            return lambda: None, False
        return self.outcome(user, name, run_id, args[-1]), False

    def next_step(self, task_id: str, choice: int) -> tuple[str, list[Any]]:
        """The command that takes the task one step on from where it stands."""
        try:
            state = self.project().task(task_id)
        except NotFound:
            return "delete", [0]
        run_id = state["run_id"]
        status = None if run_id is None else self.status(UUID(run_id))
        if state["column"] != READY:
            return "move", [0, READY if choice < 6 else BACKLOG]
        if run_id is None or status is None or status in FAILED_RUN:
            return ("start", [0]) if choice < 6 else ("move", [0, BACKLOG])
        if status == "pending":
            return ("claim", [0]) if choice < 7 else ("cancel", [0])
        if status == "in_progress":
            outcome = ["changes"] * 3 + ["no_changes", "failed", "failed", "cancel", "pause"]
            return "report", [0, outcome[choice]]
        if status == "paused":
            return ("resume", [0]) if choice < 5 else ("cancel", [0])
        if status == "awaiting_review":
            return "review", [0, ("approve", "decline", "changes")[choice % 3]]
        return ("move", [0, ARCHIVED]) if choice < 4 else ("delete", [0])

    def outcome(self, user: User, name: str, run_id: UUID, arg: Any) -> Callable[[], Any]:
        """A runner's or the owner's command on the task's run."""
        engine = user.runtime.engine

        def claim() -> None:
            _, lease = engine.claim_run(run_id, RUNNER)
            with self.lock:
                self.leases[run_id] = max(self.leases.get(run_id, 0), lease.fencing_token)

        def report() -> None:
            if arg == "cancel":
                engine.cancel_run(run_id, OWNER, reason="enough")
            elif arg == "pause":
                engine.pause_run(run_id, OWNER)
            else:
                failure = {"category": "agent", "message": "it broke"}
                token = self.leases.get(run_id, 0)
                engine.report_outcome(run_id, RUNNER, token, arg, tree_hash="t", failure=failure)

        commands: dict[str, Callable[[], Any]] = {
            "claim": claim,
            "report": report,
            "review": lambda: engine.review_run(
                run_id,
                OWNER,
                approved=arg == "approve",
                request_changes=arg == "changes",
                comment=arg,
            ),
            "cancel": lambda: engine.cancel_run(run_id, OWNER, reason="enough"),
            "resume": lambda: engine.resume_run(run_id, OWNER),
        }
        return commands[name]

    def run_of(self, task_id: str) -> UUID | None:
        try:
            run_id = self.project().task(task_id)["run_id"]
        except NotFound:
            return None
        return None if run_id is None else UUID(run_id)

    def status(self, run_id: UUID) -> str | None:
        try:
            return self.users[0].runtime.engine.get_run(run_id).status
        except NotFound:
            return None


def play(board: Board, step: tuple[Any, ...]) -> None:
    """Both users' commands at once; a refused one (a domain error) is part of the game."""
    first, second = board.users
    (command_a, on_project), (command_b, _) = (
        board.command(first, step[0]),
        board.command(second, step[1]),
    )
    held = step[2] != "free" and on_project
    first.hold.arm(None if not held else "load" if step[2] == "stale" else "save")
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]
    errors: list[BaseException] = []
    version_after_b: list[int] = []

    def run(slot: int, command: Callable[[], Any]) -> None:
        try:
            barrier.wait(WAIT)
            if slot == 1 and held:
                assert first.hold.reached.wait(WAIT), "the first user never got there"
            try:
                results[slot] = command()
            except DomainError as refused:
                assert "too fast" not in str(refused), refused
            if slot == 1 and held:
                version_after_b.append(board.project().version)
        except BaseException as failed:
            errors.append(failed)
        finally:
            if slot == 0:
                first.hold.where = None  # never leave the other waiting
                first.hold.reached.set()
            else:
                first.hold.done.set()

    first.saves.clear()
    threads = [
        threading.Thread(target=run, args=(i, c)) for i, c in enumerate((command_a, command_b))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not any(t.is_alive() for t in threads), "a step got stuck"
    if errors:
        raise errors[0]
    conflicted = any(kind == "project" and hit for kind, hit in first.saves)
    if conflicted:
        event("a project command was decided again after a conflict")
    loaded = first.hold.loaded_version
    changed_under = loaded is not None and version_after_b[0] > loaded
    if changed_under and any(kind == "project" and not hit for kind, hit in first.saves):
        # The first user decided on a project the second changed, then saved project events:
        # its first save must have met the second's and been decided again.
        assert conflicted, "a command decided on a stale project was saved unchecked"
    for result in results:  # the first user's first, so the order of tasks is reproducible
        if isinstance(result, tuple) and result[0] == "made":
            board.tasks.append(result[1])
        elif isinstance(result, tuple) and result[0] == "deleted":
            board.deleted.add(result[1])
        elif isinstance(result, tuple) and result[0] == "started":
            board.runs.add(result[1])
    check_aggregate(board)


def check_aggregate(board: Board) -> Project:
    """The Project's columns are a permutation of its live tasks, each in its own column."""
    project = board.project()
    listed = [t for column in COLUMNS for t in project.columns[column]]
    assert sorted(listed) == sorted(project.tasks)
    assert set(project.tasks) == set(board.tasks) - board.deleted
    for column in COLUMNS:
        assert all(project.tasks[t]["column"] == column for t in project.columns[column])
    return project


def board_rows(runtime: Runtime, project_id: UUID) -> list[tuple[Any, ...]]:
    """The board's task rows, then its settings row (with its stamp)."""
    with runtime.db.reading() as cur:
        rows = cur.execute(
            "SELECT * FROM board_view WHERE project_id = ? ORDER BY task_id", (str(project_id),)
        ).fetchall()
        rows += cur.execute(
            "SELECT * FROM board_settings_view WHERE project_id = ?", (str(project_id),)
        ).fetchall()
    return [tuple(r) for r in rows]


def read_board(runtime: Runtime, project_id: UUID) -> dict[str, Any]:
    with runtime.db.reading() as cur:
        shown = readmodels.get_board(cur, str(project_id), OWNER)
        archived = cur.execute(
            "SELECT task_id, rank FROM board_view WHERE project_id = ? "
            "AND column_name = 'archived' ORDER BY rank",
            (str(project_id),),
        ).fetchall()
    assert shown is not None
    return {"shown": shown, "archived": [tuple(r) for r in archived]}


def check_read_model(board: Board) -> None:
    """The read model against the aggregate and the runs, then against a rebuild."""
    runtime = board.users[0].runtime
    runtime.projection.catch_up()
    project = check_aggregate(board)
    live = read_board(runtime, board.project_id)
    statuses = {
        t: board.status(UUID(s["run_id"])) if s["run_id"] else None
        for t, s in project.tasks.items()
    }

    # 1. Every live task exactly once (the archived ones apart), no deleted one.
    shown = {c["name"]: c["tasks"] for c in live["shown"]["columns"]}
    ids = [t["task_id"] for tasks in shown.values() for t in tasks] + [
        t for t, _ in live["archived"]
    ]
    assert sorted(ids) == sorted(project.tasks)
    assert not board.deleted & set(ids)

    # 2. and 4. Each task where its run really is, in the aggregate's order and rank.
    for name, tasks in shown.items():
        expected = [
            (t, rank)
            for column in (BACKLOG, READY)
            for rank, t in enumerate(project.columns[column])
            if shown_column(column, project.tasks[t]["run_id"], statuses[t]) == name
        ]
        assert [(t["task_id"], t["rank"]) for t in tasks] == expected, name
        for doc in tasks:
            run = doc["run"]
            assert (run and run["status"]) == statuses[doc["task_id"]]
    assert live["archived"] == [(t, rank) for rank, t in enumerate(project.columns[ARCHIVED])]
    # A run still going is its task's last run: a task is never moved or deleted away from it.
    going = {str(r) for r in board.runs if board.status(r) in ACTIVE_RUN}
    assert going <= {s["run_id"] for s in project.tasks.values()}

    # 3. A rebuild from the whole log gives the same board and the same rows.
    rows = board_rows(runtime, board.project_id)
    runtime.projection.rebuild()
    assert read_board(runtime, board.project_id) == live
    assert board_rows(runtime, board.project_id) == rows


@contextmanager
def scene(url: str) -> Iterator[Board]:
    """Two runtimes on one fresh database and a project of the first user's."""
    with tempfile.TemporaryDirectory() as data_dir:
        config = Config(url, Path(data_dir), retry_backoff=0.0)
        first = Runtime(config)
        try:
            second = Runtime(config)
            try:
                project, _ = first.engine.create_project(OWNER, "board", None, "main")
                yield Board((User(first), User(second)), project.id)
            finally:
                second.close()
        finally:
            first.close()


def check_history(url: str, history: list[tuple[Any, ...]]) -> None:
    with scene(url) as board:
        for step in history:
            play(board, step)
        check_read_model(board)


@settings(max_examples=40, deadline=None)
@given(history=histories)
def test_on_sqlite_two_users_at_once_keep_the_board_whole(history: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        check_history(f"sqlite:///{Path(directory) / 'events.db'}", history)


@pytest.mark.postgres
@settings(max_examples=15, deadline=None)
@given(history=histories)
def test_on_postgres_two_users_at_once_keep_the_board_whole(history: list[tuple]) -> None:
    with postgres_schema() as url:
        check_history(url, history)
