"""The runs list's query plan on PostgreSQL (adapters/readmodels/schema.py `analyze`): a
process that takes the lead gives the planner statistics of the read models, so that a
list's first page walks the (owner, created_position) index backwards instead of reading
and sorting every one of the user's runs, on a store filled before it started."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import open_runtime, postgres_schema

LIST = (
    "EXPLAIN SELECT created_position, doc FROM runs_view WHERE owner = ? AND archived = 0 "
    "ORDER BY created_position DESC LIMIT 51"
)


@pytest.mark.postgres
def test_a_new_leader_analyzes_the_read_models(tmp_path: Path) -> None:
    with postgres_schema() as url:
        filler = open_runtime(url, tmp_path / "a")
        try:
            for i in range(3000):
                filler.engine.submit_run("alice", f"run {i}")
            filler.catch_up()
            with filler.db.reading() as cur:
                before = "\n".join(r[0] for r in cur.execute(LIST, ("alice",)).fetchall())
        finally:
            filler.close()
        leader = open_runtime(url, tmp_path / "b")
        try:
            assert leader.lead_if_free()
            with leader.db.reading() as cur:
                plan = "\n".join(r[0] for r in cur.execute(LIST, ("alice",)).fetchall())
        finally:
            leader.stop()  # its duties and the worker lock
            leader.close()
    assert "Sort" in before  # never analyzed: every one of alice's runs read and sorted
    assert "Index Scan Backward using runs_view_owner" in plan, plan
    assert "Sort" not in plan
