"""Export, then import into an empty store, reproduces every run's events and hashes, every
read model and the Merkle root, over random histories (runs with output, reviews, merges;
projects with tasks started as runs), on PostgreSQL and on SQLite."""

from __future__ import annotations

import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import merkle, merkle_log, readmodels
from adapters.ledger_export import export
from adapters.store_audit import open_store
from api.config import Config
from api.service.ledger_import import import_file
from api.service.runtime import Runtime
from domain.errors import DomainError
from tests.property.test_rebuild import OWNER, Driver, histories
from tests.support import fresh_store

project_steps = st.lists(
    st.tuples(st.sampled_from(["create", "task", "ready", "start"]), st.integers(0, 3)),
    max_size=8,
)


def play_projects(runtime: Runtime, steps: list[tuple[str, int]]) -> None:
    """Projects, their tasks, and tasks made ready and started (as runs of the project)."""
    engine, projects = runtime.engine, []
    for name, n in steps:
        if name == "create" or not projects:
            projects.append(engine.create_project(OWNER, f"p{n}", None, "main")[0].id)
            continue
        project = projects[n % len(projects)]
        tasks = list(engine.get_project(project).tasks)
        with suppress(DomainError):
            if name == "task" or not tasks:
                engine.create_task(project, OWNER, f"t{n}", "")
            elif name == "ready":
                engine.move_task(project, OWNER, tasks[n % len(tasks)], "ready")
            else:
                engine.start_task(project, OWNER, tasks[n % len(tasks)])


def everything(runtime: Runtime) -> tuple[list[tuple[Any, ...]], dict[str, Any], bytes]:
    """Every event (stream, version, topic, state, hashes) in commit order, every read
    model's rows, and the root of the store's Merkle log (the RFC 9162 root of the events'
    hashes)."""
    rows, after = [], 0
    while page := runtime.db.events_after(after, 1000):
        rows += [(r.run_id, r.sequence, r.topic, r.state, r.prev_hash, r.hash) for r in page]
        after = page[-1].position
    with runtime.db.reading() as cur:
        views = {
            table: sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in readmodels.READ_MODEL_TABLES
        }
    size = runtime.audit_log.catch_up()  # the store's own Merkle log, kept by the server
    with runtime.db.reading() as cur:
        stored_root = merkle_log.root(cur, size)
    assert size == len(rows) and stored_root == merkle.mth([row[5] for row in rows])
    return rows, views, stored_root


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(history=histories, projects=project_steps)
def test_an_import_of_an_export_is_the_same_history(
    kind: str, history: list[tuple[Any, ...]], projects: list[tuple[str, int]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        here = Path(directory)
        (here / "a").mkdir()
        (here / "b").mkdir()
        with fresh_store(kind, here / "a") as source_url, fresh_store(kind, here / "b") as url:
            source = Runtime(Config(source_url, here, lease_seconds=0.0, retry_backoff=0.0))
            try:
                driver = Driver(source)
                for command in history:
                    driver.play(command)
                play_projects(source, projects)
                source.catch_up()
                db = open_store(source.settings)
                with (here / "export.ndjson").open("wb") as out:
                    export(db, ("all", None), out)
                db.close()
                before = everything(source)
                assert before[0]  # a history to compare
            finally:
                source.close()
            copy = Runtime(Config(url, here / "b"))
            try:
                report = import_file(copy, here / "export.ndjson")
                assert report.ok, report.failures
                assert everything(copy) == before
            finally:
                copy.close()
