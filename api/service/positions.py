"""Read-your-writes: waiting for the read models to reach a position of the log."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from api.threads import in_thread

if TYPE_CHECKING:
    from api.service.bootstrap import Services

READ_WAIT_SECONDS = 5.0


class StoreAway(Exception):
    """The database is away: the read models cannot move now."""


class NotCaughtUp(Exception):
    """The read models did not reach the wanted position in time."""

    def __init__(self, position: int, wanted: int) -> None:
        super().__init__(f"The read models reached {position}, not {wanted}, in time.")
        self.position, self.wanted = position, wanted


async def wait_for_read_models(services: Services, wanted: int) -> int:
    """The read models' position once it is at least `wanted` (NotCaughtUp after 5 s)."""
    position = await in_thread(services.read_models_position)
    deadline = time.monotonic() + READ_WAIT_SECONDS
    while position < wanted:
        if services.feed.failing:
            raise StoreAway()
        if time.monotonic() >= deadline:
            raise NotCaughtUp(position, wanted)
        await asyncio.sleep(0.005)
        position = await in_thread(services.read_models_position)
    return position


def wait_for_head(services: Services, seconds: float = 5.0) -> None:
    """Block (on a worker thread) until the read models reach the log's head, or time runs out."""
    head = services.db.head()
    deadline = time.monotonic() + seconds
    while services.read_models_position() < head and time.monotonic() < deadline:
        time.sleep(0.005)
