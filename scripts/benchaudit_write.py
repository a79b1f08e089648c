"""bench_audit.py's write path: the same code served hashed ("chain + log"), with the Merkle
log off ("chain") and with all hashing off ("plain"), each on its own fresh database, under
runners posting to their own runs in alternating slices; a row per comparison, hashed /
plain (scripts/README.md, bench_audit.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import benchaudit
import orjson
from bench_runners import close_runs, output_event
from benchload import ROOT, BenchError, Measured, Op, alternate, combine, timed_workers
from benchreport import Report, Row, describe, fmt_rate, postgres_schema, progress
from benchserver import (
    RUNNER_KEY,
    Held,
    LeanClient,
    Server,
    open_runs,
    postgres_cpu,
    wait_quiet,
)

WRITE_CASES = ((1, 1), (1, 4), (100, 1), (100, 4))  # (events per POST, clients)
UNHASHED = (str(ROOT / "scripts" / "serve_unhashed.py"),)
UNLOGGED = (*UNHASHED, "--keep-chain")  # the hash chain, without the Merkle log
RUNNER_ID = "bench-runner"
TARGET_WRITE = 0.90


class Slices(Protocol):
    """How long to load each side: timed seconds per case and side, over `rounds` slices
    each, after `warmup` seconds per slice."""

    duration: float
    warmup: float
    rounds: int


@contextlib.contextmanager
def fresh_url(store: str, pg_url: str, workdir: Path, name: str) -> Iterator[str]:
    """Another empty database of the same store (a SQLite file, a PostgreSQL schema)."""
    if store == "postgres":
        with postgres_schema(pg_url, announce=True) as url:
            yield url
        return
    path = workdir / name / "events.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    yield f"sqlite:///{path}"


# -- 1. the write path, hashed and plain ------------------------------------------------------


def post_events(server: Server, runs: list[Held], per_post: int, plan: Slices) -> Measured:
    """Each client posts `per_post` output events per request to its own run; counts events."""
    events = [output_event(k) for k in range(per_post)]

    def open_worker(i: int) -> tuple[Op, Op]:
        run, client = runs[i], LeanClient(server, RUNNER_KEY)
        path = f"/api/runs/{run.run_id}/events"
        body = orjson.dumps({"fencing_token": run.token, "events": events})

        def op() -> None:
            status, answer = client.post(path, body)
            if status != 200:
                raise BenchError(f"{status} {answer[:200]!r}")
            got = int(orjson.loads(answer)["sequence"])
            if got != run.sequence + per_post:
                raise BenchError(f"sequence {got} after {run.sequence} + {per_post}")
            run.sequence = got

        return op, client.close

    m = timed_workers(len(runs), open_worker, plan.warmup, plan.duration / plan.rounds, 20)
    return Measured(
        m.count * per_post, m.seconds, m.errors, m.latencies, m.first_error, m.total * per_post
    )


@dataclass(frozen=True)
class Side:
    """One server set under load: the process the clients post to, and the worker that
    projects and appends the Merkle log beside it (None: the same process does all)."""

    api: Server
    worker: Server | None = None

    def cpu_seconds(self) -> tuple[float, float]:
        """Its processes' CPU so far: the API process's, the worker's (0 with none)."""
        return self.api.cpu_seconds(), self.worker.cpu_seconds() if self.worker else 0.0

    def quiet(self) -> None:
        """Wait until its processes idle: after the load stops, the worker still projects
        and appends the Merkle log (up to a settle, a second, later), which belongs to this
        side's figures."""
        wait_quiet(lambda: sum(self.cpu_seconds()))

    def check_alive(self) -> None:
        self.api.check_alive()
        if self.worker is not None:
            self.worker.check_alive()


# The comparisons of each write case: (label, hashed side, plain side, held to the target).
# "api + worker": the write path alone (`serve --role api`: it hashes each event as it stores
# it), the projections and the Merkle log in a `--role worker` process beside it, the
# deployment docs/operations.md describes. "chain": the hashing on the write path, the
# Merkle log off (the target: an asynchronous writer, its append rate measured on
# its own below); "chain + log": the whole audit, whose log appends take the same two
# cores on this machine. "one process": `serve` doing all of it.
COMPARISONS = (
    ("api + worker, chain", "chain-api", "plain-api", True),
    ("api + worker, chain + log", "hashed-api", "plain-api", False),
    ("one process, chain + log", "hashed", "plain", False),
)


def cpu_per_event(side: str, cpu: list[float], events: int, store: str) -> str:
    """A side's server CPU per event: in all, and split when a worker was beside the API;
    PostgreSQL's beside it (every postgres process on the machine, over the side's slices)."""
    per = [1000 * seconds / max(1, events) for seconds in cpu]
    split = f" (api {per[0]:.3f} + worker {per[1]:.3f})" if cpu[1] else ""
    database = f", postgres {per[2]:.3f}" if store == "postgres" else ""
    return f"{side} {per[0] + per[1]:.3f}{split}{database}"


def write_case(
    store: str, sides: dict[str, Side], per_post: int, n: int, plan: Slices, report: Report
) -> None:
    """One case on every side, in alternating slices; a row per comparison."""
    runs = {
        name: open_runs(side.api, n, f"write {per_post}x{n}", RUNNER_ID)
        for name, side in sides.items()
    }

    def load(name: str) -> Callable[[], Measured]:
        def measure() -> Measured:
            m = post_events(sides[name].api, runs[name], per_post, plan)
            sides[name].quiet()  # its work after the load is its own, not the next side's
            sides[name].check_alive()
            return m

        return measure

    try:
        parts, cpu = alternate(  # cpu: the API's, the worker's, PostgreSQL's
            {name: load(name) for name in sides},
            plan.rounds,
            lambda name: (*sides[name].cpu_seconds(), postgres_cpu()),
            lambda name, k: progress(
                f"{store}: {per_post} ev/POST, {n} client(s), {name}, round {k}"
            ),
        )
    finally:
        for name, side in sides.items():
            close_runs(side.api, runs[name])
    for label, hashed_side, plain_side, targeted in COMPARISONS:
        if hashed_side not in sides or plain_side not in sides:
            continue  # (another group's)
        hashed, plain = combine(parts[hashed_side]), combine(parts[plain_side])
        per_round = ", ".join(
            f"{h.rate / p.rate:.2f}" if p.rate else "n/a"
            for h, p in zip(parts[hashed_side], parts[plain_side], strict=True)
        )
        cpu_note = "; ".join(
            cpu_per_event(side, cpu[name], sum(m.total for m in parts[name]), store)
            for side, name in (("hashed", hashed_side), ("plain", plain_side))
        )
        notes = (
            f"hashed {describe(hashed, 'request')}; plain {describe(plain, 'request')}; ratio "
            f"per round {per_round}; server ms CPU/event {cpu_note}"
        )
        ratio = f"{hashed.rate / plain.rate:.2f}" if plain.rate else "n/a"
        if targeted and plain.rate and hashed.rate / plain.rate < TARGET_WRITE:
            notes += f"; BELOW the {TARGET_WRITE:.2f} target"
        kind = "cmd" if per_post == 1 else "batch"
        measure = f"POST events, {per_post}/{kind}, {label}"
        report.rows.append(
            Row(store, measure, str(n), fmt_rate(hashed.rate), fmt_rate(plain.rate), ratio, notes)
        )
        for side, m in (("hashed", hashed), ("plain", plain)):
            if m.errors:
                report.warn(f"{store} {measure} {side} ({n}): {m.errors} errors: {m.first_error}")
            if m.count == 0:
                report.warn(f"{store} {measure} {side} ({n}): nothing finished inside the window")


# The server sets, one group at a time (all of them at once would pass PostgreSQL's
# connection limit): (side, kind of server, with a worker beside it).
SIDE_GROUPS = (
    (("chain-api", "chain", True), ("hashed-api", "hashed", True), ("plain-api", "plain", True)),
    (("hashed", "hashed", False), ("plain", "plain", False)),
)
LAUNCHERS = {"hashed": ("-m", "api.cli"), "chain": UNLOGGED, "plain": UNHASHED}


def write_path(store: str, pg_url: str, workdir: Path, plan: Slices, report: Report) -> None:
    """Every group of sides, each side on its own fresh database, then every write case."""
    for group in SIDE_GROUPS:
        with contextlib.ExitStack() as stack:
            sides, servers = open_sides(group, store, pg_url, workdir, stack)
            try:
                for made in servers:
                    made.start_for(store)
                for per_post, n in WRITE_CASES:
                    write_case(store, sides, per_post, n, plan, report)
            finally:
                for made in servers:
                    benchaudit.stop_server(made, store, report)


def open_sides(
    group: tuple[tuple[str, str, bool], ...],
    store: str,
    pg_url: str,
    workdir: Path,
    stack: contextlib.ExitStack,
) -> tuple[dict[str, Side], list[Server]]:
    """A group's sides, their servers not started yet (their databases dropped by `stack`)."""
    servers: list[Server] = []

    def server(name: str, kind: str, role: str | None = None, url: str = "") -> Server:
        url = url or stack.enter_context(fresh_url(store, pg_url, workdir, name))
        made = Server(url, workdir / f"{name}-data", client_timeout=60, launcher=LAUNCHERS[kind])
        if role is not None:
            made.env["RUNLEDGER_ROLE"] = role
        servers.append(made)
        return made

    sides: dict[str, Side] = {}
    for name, kind, split in group:
        if split:
            api = server(name, kind, "api")
            sides[name] = Side(api, server(f"{name}-worker", kind, "worker", api.database_url))
        else:
            sides[name] = Side(server(name, kind))
    return sides, servers
