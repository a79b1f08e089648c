"""The worker leadership on both stores: one leader at a time, a standby takes over when the
leader lets go, and a leader that loses its lock stops its duties."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.locks import ProcessLock
from adapters.store import StoreSettings
from api.service.leadership import LOCK_NAME, Leadership
from tests.support import open_runtime, postgres_schema


class Duties:
    """Records promotions and demotions."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def leadership(self, settings: StoreSettings) -> Leadership:
        """A leadership over the worker lock that records into this log."""
        lock = ProcessLock(settings, LOCK_NAME)
        return Leadership(lock, lambda: self.log.append("up"), lambda: self.log.append("down"))


def test_only_one_of_two_candidates_leads(store_url: str) -> None:
    settings = StoreSettings.from_url(store_url)
    first, second = Duties(), Duties()
    a, b = first.leadership(settings), second.leadership(settings)
    try:
        assert a.try_lead() and not b.try_lead()
        assert (first.log, second.log) == (["up"], [])
    finally:
        a.stop()
        b.stop()


def test_a_standby_takes_over_once_the_leader_lets_go(store_url: str) -> None:
    settings = StoreSettings.from_url(store_url)
    first, second = Duties(), Duties()
    a, b = first.leadership(settings), second.leadership(settings)
    try:
        a.try_lead()
        b._tick()  # standing by: the lock is taken
        a.stop()
        b._tick()
        assert b.leading and first.log == ["up", "down"] and second.log == ["up"]
    finally:
        b.stop()


@pytest.mark.postgres
def test_a_leader_whose_lock_connection_dies_stops_its_duties() -> None:
    with postgres_schema() as url:
        duties = Duties()
        leader = duties.leadership(StoreSettings.from_url(url))
        try:
            assert leader.try_lead()
            leader.lock._conn.close()  # as when the database drops the connection
            leader._tick()
            assert not leader.leading and duties.log == ["up", "down"]
        finally:
            leader.stop()


def test_a_process_that_does_not_lead_reads_the_position_from_the_tracking_table(
    store_url: str, tmp_path: Path
) -> None:
    leader = open_runtime(store_url, tmp_path / "a")
    standby = open_runtime(store_url, tmp_path / "b", role="api")
    try:
        submitted = leader.engine.submit_run("alice", "a task")
        assert leader.lead_if_free()  # and catch up
        assert standby.read_models_position() == submitted.position
    finally:
        leader.stop()
        leader.close()
        standby.close()
