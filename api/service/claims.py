"""Claiming work: the oldest claimable run under a fresh lease, and the board that lets many
idle long-poll claims wait on one look at the runs view."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters import readmodels
from api.threads import in_thread
from domain.errors import Conflict, NotFound
from domain.timestamps import format_timestamp

if TYPE_CHECKING:
    from api.service.bootstrap import Services

CANDIDATES = 20
IDLE_POLL = 5.0  # a safety net: claimable runs normally wake the waiters at once

Claimed = dict[str, Any]


def try_claim(services: Services, runner_id: str, runner: str) -> Claimed | None:
    """Claim the oldest claimable run; None when there is none (losers of a race move on)."""
    candidates, _ = _claimable(services)
    return _claim_first(services, candidates, runner_id, runner)[0]


def _claimable(services: Services) -> tuple[list[str], float]:
    """(claimable runs, oldest first; seconds until the next retry backoff ends)."""
    now = time.time()
    with services.db.reading() as cur:
        candidates = readmodels.claimable_runs(cur, CANDIDATES, now)
        at = readmodels.next_claimable_at(cur, now)
    return candidates, math.inf if at is None else max(at - now, 0.0)


def _claim_first(
    services: Services, candidates: list[str], runner_id: str, runner: str
) -> tuple[Claimed | None, int]:
    """(the first candidate this runner could claim, how many candidates that used up)."""
    engine = services.engine
    for used, candidate in enumerate(candidates, 1):
        try:
            appended, lease = engine.claim_run(UUID(candidate), runner_id, runner)
        except (Conflict, NotFound):
            continue
        return {
            "lease_id": lease.lease_id,
            "fencing_token": lease.fencing_token,
            "lease_expires_at": format_timestamp(lease.expires_at),
            "run": {**lease.run, "sequence": appended.sequence, "position": appended.position},
        }, used
    return None, len(candidates)


def _look_and_claim(
    services: Services, runner_id: str, runner: str
) -> tuple[Claimed | None, int, float]:
    """One look at the view, and a claim by the waiter who took it, in one thread hop:
    (its claim, claimable runs left for others, seconds until the next backoff ends)."""
    candidates, backoff_in = _claimable(services)
    claimed, used = _claim_first(services, candidates, runner_id, runner)
    return claimed, len(candidates) - used, backoff_in


class ClaimBoard:
    """One look at the runs view shared by every waiting claim of a process.

    Idle long-polls cost nothing per waiter: the view is read again only after news (the
    hub's generation moved), when a retry backoff ends, or every IDLE_POLL seconds, by the
    first waiter to ask, who claims at once; then only as many other waiters as there were
    claimable runs left go on to try, so one new run does not send hundreds of waiters to
    the store at once.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._generation = -1
        self._valid_until = 0.0  # monotonic
        self._tickets = 0

    async def look(
        self, services: Services, generation: int, runner_id: str, runner: str
    ) -> tuple[Claimed | None, bool, float]:
        """(a claim made for this waiter, or whether it should try one itself; seconds
        until the next look)."""
        async with self._lock:
            if generation != self._generation or time.monotonic() >= self._valid_until:
                claimed, left, backoff_in = await in_thread(
                    _look_and_claim, services, runner_id, runner
                )
                self._generation, self._tickets = generation, left
                self._valid_until = time.monotonic() + min(IDLE_POLL, backoff_in)
                return claimed, False, self._wait()
            go = self._tickets > 0
            self._tickets -= go
            return None, go, self._wait()

    def _wait(self) -> float:
        return max(self._valid_until - time.monotonic(), 0.0)


async def claim(
    services: Services,
    runner_id: str,
    runner: str,
    wait_seconds: float,
    gone: asyncio.Event | None = None,
) -> Claimed | None:
    """Claim the oldest claimable run, waiting up to `wait_seconds` for one (None if none).

    `gone` is set when the client that asked has disconnected: from then on nothing is
    claimed for it, and a claim made as it went is given back at once (run.claim_abandoned;
    a claim whose answer is lost later is given back once its confirm time passes)."""
    deadline = time.monotonic() + wait_seconds
    hub, board = services.hub, services.claim_board
    seen = hub.generation  # before looking, so news during the look is not lost
    if _is_gone(gone):
        return None
    claimed = await in_thread(try_claim, services, runner_id, runner)
    while claimed is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or _is_gone(gone):
            return None
        claimed, go, look_again = await board.look(services, seen, runner_id, runner)
        if claimed is None and go:
            claimed = await in_thread(try_claim, services, runner_id, runner)
        elif claimed is None:
            # Woken when the runs view gains a claimable run (bootstrap's wake_claims) or
            # anything is published; the board's next look covers backoffs and the idle poll.
            await _wait(hub.wait_for_news(min(remaining, look_again), since=seen), gone)
            seen = hub.generation
    await asyncio.sleep(0)  # a disconnect that came meanwhile is seen now
    if _is_gone(gone):
        run_id, token = UUID(claimed["run"]["run_id"]), claimed["fencing_token"]
        await in_thread(services.engine.abandon_claim, run_id, token, True)
        return None
    return claimed


def _is_gone(gone: asyncio.Event | None) -> bool:
    return gone is not None and gone.is_set()


async def _wait(news: Coroutine[Any, Any, None], gone: asyncio.Event | None) -> None:
    """Wait for news, or until the client is gone."""
    if gone is None:
        await news
        return
    waits = {asyncio.ensure_future(news), asyncio.ensure_future(gone.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
