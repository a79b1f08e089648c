"""Rebuild with a swap, on both stores: the swapped-in tables equal a projection from
scratch, one read model can be rebuilt alone, and readers (with the live projector and
writers going on in another runtime) never fail nor see a half-built model."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from adapters import readmodels
from adapters.readmodels.rebuild import RebuildArea, RebuildBusy
from api.cli import main
from api.service.runtime import Runtime
from tests.support import open_runtime

OWNER, RUNNER = "alice", "runner-1"


def dump(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model table's rows, in a stable order, and the tracking positions."""
    found = {}
    with runtime.db.reading() as cur:
        for table in (*readmodels.READ_MODEL_TABLES, "projection_tracking"):
            rows = cur.execute(f"SELECT * FROM {table}").fetchall()
            found[table] = sorted(tuple(str(v) for v in row) for row in rows)
    return found


def from_scratch(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """The tables a projection of the whole log from nothing gives (rebuilt in place)."""
    runtime.projection.reload()
    runtime.projection.rebuild()
    return dump(runtime)


def make_history(runtime: Runtime, runs: int = 6) -> list[UUID]:
    """Runs in several states, a project with a board whose tasks ran."""
    engine = runtime.engine
    made = [engine.submit_run(OWNER, f"task {i}").run_id for i in range(runs)]
    for run_id in made[: runs // 2]:
        _, lease = engine.claim_run(run_id, RUNNER)
        engine.report_outcome(run_id, RUNNER, lease.fencing_token, "changes", tree_hash="abc")
    project, _ = engine.create_project(OWNER, "board", None, "main")
    for title in "ab":
        project, _ = engine.create_task(project.id, OWNER, title, "")
        task_id = list(project.tasks)[-1]
        engine.move_task(project.id, OWNER, task_id, "ready")
        made.append(engine.start_task(project.id, OWNER, task_id).run_id)
    return made


def test_the_swapped_in_tables_equal_a_projection_from_scratch(runtime: Runtime) -> None:
    make_history(runtime)
    runtime.catch_up()
    with runtime.db.projecting() as cur:  # live tables that drifted: the rebuild replaces them
        cur.execute("UPDATE runs_view SET status = 'bogus'")
        cur.execute("DELETE FROM board_view")
        cur.execute("INSERT INTO owners_view (owner, first_position) VALUES ('ghost', 1)")

    position = runtime.rebuild()

    assert position == runtime.db.head()
    rebuilt = dump(runtime)
    assert ("ghost", "1") not in rebuilt["owners_view"]
    assert len(rebuilt["board_view"]) == 2
    assert rebuilt == from_scratch(runtime)


def test_rebuilding_one_read_model_swaps_only_its_tables(runtime: Runtime) -> None:
    make_history(runtime)
    runtime.catch_up()
    with runtime.db.projecting() as cur:
        cur.execute("UPDATE runs_view SET status = 'bogus'")
        cur.execute("DELETE FROM projects_view")

    runtime.rebuild(["projects"])

    after = dump(runtime)
    assert len(after["projects_view"]) == 1
    assert all(row[5] == "bogus" for row in after["runs_view"])
    with pytest.raises(ValueError, match="no read model named nope"):
        runtime.rebuild(["nope"])


def test_a_second_rebuild_at_the_same_time_is_refused(runtime: Runtime) -> None:
    with RebuildArea(runtime.db, ["runs_view"]), pytest.raises(RebuildBusy):
        runtime.rebuild()
    runtime.rebuild()  # the first one's lock and leftovers are gone


def test_readers_never_fail_nor_see_a_half_built_model_while_another_process_rebuilds(
    store_url: str, tmp_path: Path
) -> None:
    server = open_runtime(store_url, tmp_path / "server")
    rebuilder = open_runtime(store_url, tmp_path / "cli")
    try:
        made = make_history(server, runs=40)
        server.catch_up()
        server.projection.start()  # the live projector keeps going during the rebuild
        stop = threading.Event()
        problems: list[str] = []
        reads = [0]

        def read() -> None:
            seen = 0
            while not stop.is_set():
                try:
                    with server.db.reading() as cur:
                        listed = readmodels.list_runs(
                            cur,
                            OWNER,
                            project_id=None,
                            statuses=(),
                            parent_run_id=None,
                            archived=True,
                            before=None,
                            limit=10_000,
                        )
                        first = readmodels.get_run(cur, str(made[0]), OWNER)
                        boards = cur.execute("SELECT COUNT(*) FROM board_view").fetchone()
                except Exception as exc:  # what a reader must never meet
                    problems.append(f"read failed: {exc!r}")
                    return
                if len(listed) < seen or first is None or boards != (2,):
                    problems.append(f"half built: {len(listed)} runs after {seen}, {boards}")
                    return
                seen = len(listed)
                reads[0] += 1

        def write() -> None:
            # A busy server, not one written flat out: a rebuild projects no faster than
            # commands are made, and would only chase them.
            i = 0
            while not stop.wait(0.005):
                server.engine.submit_run(OWNER, f"more {i}")
                server.projection.wake()
                i += 1

        threads = [threading.Thread(target=read) for _ in range(2)]
        threads.append(threading.Thread(target=write))
        for thread in threads:
            thread.start()
        try:
            for _ in range(3):
                rebuilder.rebuild()
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert problems == []
        assert reads[0] > 0
        server.projection.stop()
        server.projection.reload()
        server.catch_up()
        live = dump(server)
        assert live == from_scratch(server)
    finally:
        server.projection.stop()
        server.close()
        rebuilder.close()


def test_status_gives_each_read_model_its_position_and_lag(
    runtime: Runtime, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_history(runtime, runs=2)
    runtime.catch_up()
    runtime.engine.submit_run(OWNER, "not projected yet")
    head = runtime.db.head()
    database = ["--database", store_url]

    assert main(["projections", "status", "--json", *database]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["head"] == head
    by_name = {entry["name"]: entry for entry in answer["read_models"]}
    assert by_name["runs"] == {"name": "runs", "position": head - 1, "lag": 1, "size": None}
    assert set(by_name) == {"runs", "projects", "leases", "owners", "board", "usage", "merkle"}
    # The log's tables come with the runtime; its writer (the leader's) has not run here.
    assert by_name["merkle"] == {"name": "merkle", "position": 0, "lag": head, "size": 0}

    assert main(["projections", "status", *database]) == 0
    text = capsys.readouterr().out
    assert f"merkle                0 {head:>8}        0" in text
    assert f"runs         {head - 1:>10}        1" in text

    assert main(["projections", "rebuild", "runs", *database]) == 0
    assert f"runs rebuilt up to position {head}" in capsys.readouterr().out


class _Release(logging.Handler):
    """Lets the blocking transaction go once the rebuild says it will try the swap again."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.go = release
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "trying again" in record.getMessage():
            self.retries += 1
            self.go.set()


def test_a_swap_that_waits_too_long_for_the_write_lock_is_tried_again(
    store_url: str, tmp_path: Path
) -> None:
    runtime = open_runtime(store_url, tmp_path, db_lock_timeout=0.5)
    release, held = threading.Event(), threading.Event()
    handler = _Release(release)
    logging.getLogger("runledger.projections").addHandler(handler)

    def hold() -> None:  # a projector's batch that takes its time
        with runtime.db.projecting():
            held.set()
            release.wait(60)

    try:
        make_history(runtime)
        runtime.catch_up()
        blocker = threading.Thread(target=hold)
        blocker.start()
        held.wait(10)
        position = runtime.rebuild()
        blocker.join()
        assert handler.retries >= 1
        assert position == runtime.db.head()
        assert dump(runtime) == from_scratch(runtime)
    finally:
        release.set()
        logging.getLogger("runledger.projections").removeHandler(handler)
        runtime.close()
