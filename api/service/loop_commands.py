"""Commands decided on the event loop: no thread per command.

A command goes to the thread pool (api/threads.py) because loading a run may read the store
and saving waits for the commit. For the commands runners send most (output events), the
run is nearly always in this process's cache and the chain's last hash remembered: then
the engine decides at once and hands the save to the group commit without waiting
(`Engine.update_soon`), and the loop is called back when it is written, one call per
command from the writer's thread. That spares each command two hand-overs between threads
(to a pool thread and back), which under load took longer than the decision itself.
Whatever cannot go that way (see update_soon) runs as before, in the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from api.service.engine import Engine
from api.service.results import Appended
from api.threads import in_thread
from domain.runs import Run


async def update(engine: Engine, run_id: UUID, decide: Callable[[Run, datetime], None]) -> Appended:
    """Run a command on a run (`Engine._update` with no user), decided on the loop when it
    can be."""
    loop = asyncio.get_running_loop()
    written: asyncio.Future[Appended | None] = loop.create_future()

    def done(outcome: Appended | BaseException | None) -> None:
        loop.call_soon_threadsafe(_settle, written, outcome)

    if engine.update_soon(run_id, decide, done):
        try:
            outcome = await asyncio.shield(written)
        except asyncio.CancelledError:
            # The save goes on: let it end before the cancellation does (as in_thread
            # does), so that nothing acts as if a command half done had not run (an
            # idempotency reservation released under a save about to commit).
            await asyncio.wait([written])
            raise
        if outcome is not None:
            return outcome
        return await in_thread(engine.update_again, run_id, decide)
    return await in_thread(engine._update, run_id, None, decide)


def _settle(
    written: asyncio.Future[Appended | None], outcome: Appended | BaseException | None
) -> None:
    if written.done():
        return
    if isinstance(outcome, BaseException):
        written.set_exception(outcome)
    else:
        written.set_result(outcome)
