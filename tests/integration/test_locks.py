"""Process locks on both stores: held by one holder at a time, and never by a dead process."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapters.db import Database
from adapters.locks import Instance, ProcessLock, instance_alive, is_held, sqlite_writer
from adapters.store import StoreSettings
from tests.serve import ROOT

HOLD = """
import sys, time
from adapters.locks import ProcessLock
from adapters.store import StoreSettings
lock = ProcessLock(StoreSettings.from_url(sys.argv[1]), sys.argv[2])
assert lock.try_acquire()
print("held", flush=True)
time.sleep(60)
"""


def hold_in_another_process(url: str, name: str) -> subprocess.Popen[str]:
    """A process that takes the lock and keeps it until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, name], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_is_refused_to_another_holder_until_released(store_url: str) -> None:
    settings = StoreSettings.from_url(store_url)
    first, second = ProcessLock(settings, "leader"), ProcessLock(settings, "leader")
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert is_held(settings, "leader")
        first.release()
        assert not is_held(settings, "leader")
        assert second.try_acquire()
    finally:
        first.release()
        second.release()


def test_locks_of_different_names_do_not_meet(store_url: str) -> None:
    settings = StoreSettings.from_url(store_url)
    one, other = ProcessLock(settings, "one"), ProcessLock(settings, "other")
    try:
        assert one.try_acquire()
        assert other.try_acquire()
    finally:
        one.release()
        other.release()


def test_a_killed_holder_frees_its_lock_at_once(store_url: str) -> None:
    settings = StoreSettings.from_url(store_url)
    proc = hold_in_another_process(store_url, "leader")
    try:
        assert is_held(settings, "leader")
        assert not ProcessLock(settings, "leader").try_acquire()
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
    deadline = time.monotonic() + 5  # PostgreSQL ends the session once it reads the EOF
    while is_held(settings, "leader") and time.monotonic() < deadline:
        time.sleep(0.02)
    taker = ProcessLock(settings, "leader")
    try:
        assert taker.try_acquire()
    finally:
        taker.release()


def test_an_instance_is_alive_until_it_closes(store_url: str) -> None:
    settings = StoreSettings.from_url(store_url)
    instance = Instance(settings)
    assert instance_alive(settings, instance.token)
    instance.close()
    assert not instance_alive(settings, instance.token)


def test_a_lost_lock_connection_is_noticed_and_taken_again(store_url: str) -> None:
    settings = StoreSettings.from_url(store_url)
    instance = Instance(settings)
    try:
        if settings.kind == "postgres":  # what a database outage does to the lock
            instance.lock._conn.close()
            assert not instance.lock.check()
            assert not instance_alive(settings, instance.token)
        instance.keep()
        assert instance.lock.check()
        assert instance_alive(settings, instance.token)
    finally:
        instance.close()


def test_sqlite_writers_of_one_process_take_turns_and_time_out_like_sqlite(
    tmp_path: Path,
) -> None:
    """The events' group writer and the read-model writers queue on one lock per file
    (adapters/locks.py sqlite_writer); a writer that cannot have it within the lock timeout
    gets SQLite's own "database is locked" (which the API answers with 503)."""
    path = tmp_path / "events.db"
    settings = dataclasses.replace(StoreSettings.from_url(f"sqlite:///{path}"), lock_timeout=0.3)
    db = Database(settings)
    with db.transaction() as cur:
        cur.execute("CREATE TABLE t (n INTEGER)")
    # Two spellings of the file (pathlib would drop the "."), whichever is asked first.
    assert sqlite_writer(os.path.join(str(tmp_path), ".", "events.db")) is sqlite_writer(str(path))
    assert sqlite_writer(os.path.join(str(tmp_path), "..", tmp_path.name, "events.db")) is (
        sqlite_writer(str(path))
    )
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.transaction() as cur:
            cur.execute("INSERT INTO t VALUES (1)")
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    assert not sqlite_writer(str(path)).acquire(blocking=False)  # the holder has the turn
    with (
        pytest.raises(sqlite3.OperationalError, match="database is locked"),
        db.transaction() as cur,
    ):
        cur.execute("INSERT INTO t VALUES (2)")
    release.set()
    holder.join(5)
    with db.transaction() as cur:  # its turn, once the holder committed
        cur.execute("INSERT INTO t VALUES (3)")
    with db.reading() as cur:
        assert [r[0] for r in cur.execute("SELECT n FROM t ORDER BY n").fetchall()] == [1, 3]
    db.close()
