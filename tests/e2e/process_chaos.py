"""Server processes under chaos, for the end-to-end tests of exactly-once policies: one
server SIGKILLed and restarted while runners report, two `--role all` servers on one
PostgreSQL whose leadership is moved. Shared by the coordination and board tests."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg

from adapters.locks import ADVISORY_NAMESPACE, advisory_key
from adapters.store import StoreSettings
from api.service.leadership import LOCK_NAME
from tests.e2e.coordination_chaos import CHAOS_ENV, Runners, get_ok, wait_for
from tests.support import ALICE, Server, postgres_schema


def kill_while_reporting(
    server: Server, runners: Runners, rng: random.Random, reports: int, kills: int
) -> None:
    """SIGKILL and restart the server `kills` times, spread over the next `reports`
    reports: the first at once, each at a random moment after some report's answer."""
    start = len(runners.reported)
    for kill in range(kills):
        runners.wait_reported(start + kill * reports // kills)
        time.sleep(rng.uniform(0, 0.1))
        server.kill()
        server.start()


@contextmanager
def two_processes(tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    """A fresh schema and two started `--role all` servers on it (the first leads)."""
    with postgres_schema() as url, ExitStack() as stack:
        started = []
        for i in range(2):
            srv = Server(url, tmp_path / f"data-{i}", RUNLEDGER_ROLE="all", **CHAOS_ENV)
            stack.callback(srv.kill)
            started.append(srv.start())
        yield url, started


def leader_of(servers: list[Server]) -> Server | None:
    """The one server that says it leads (None while none or both do)."""
    leading = []
    for srv in servers:
        if srv.proc is None or srv.proc.poll() is not None:
            continue
        with srv.client(ALICE) as client:
            if get_ok(client, "/api/diagnostics")["worker"]["leader"]:
                leading.append(srv)
    return leading[0] if len(leading) == 1 else None


def cut_lock_connection(url: str) -> None:
    """End the database session holding the worker lock: its process finds out later."""
    settings = StoreSettings.from_url(url)
    key = advisory_key(settings, LOCK_NAME) & 0xFFFFFFFF
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = %s AND objid = %s AND granted",
            (ADVISORY_NAMESPACE, key),
        )


def move_leadership(
    url: str, servers: list[Server], runners: Runners, rng: random.Random, total: int = 20
) -> None:
    """A third of the way through `total` reports: SIGKILL the leader, wait for the
    standby to lead, restart the dead one. Two thirds of the way: cut the new leader's
    lock connection."""
    runners.wait_reported(total // 3)
    time.sleep(rng.uniform(0, 0.1))
    first = leader_of(servers)
    assert first is not None
    first.kill()
    wait_for(lambda: leader_of(servers) not in (None, first), 10, "the standby to lead")
    first.start()
    runners.wait_reported(2 * total // 3)
    time.sleep(rng.uniform(0, 0.1))
    cut_lock_connection(url)
    wait_for(lambda: leader_of(servers) is not None, 15, "one leader again")
