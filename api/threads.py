"""Blocking work off the event loop: one thread pool for every request's store access.

Starlette's `run_in_threadpool` (and anyio's `to_thread.run_sync` under it) hands each call
to a worker thread through a `queue.Queue`, whose `Condition` is Python code, both ways:
about 80 us of CPU per trip on the 2-core development machine, against 26 us for asyncio's
`run_in_executor` over a `ThreadPoolExecutor`, whose queue is C (measured with 16 callers;
every command and most reads make one trip). What anyio's way promised is kept:

- the caller's context variables go with the call (a request's idempotency receipt does);
- at most 40 threads (anyio's default limit);
- a caller cancelled while its call runs (a client gone, a shutdown) waits for the call
  to end before the cancellation goes on, so that nothing acts as if a command half done
  had not run (an idempotency reservation released under a save about to commit).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREADS = 40

_pool = ThreadPoolExecutor(THREADS, thread_name_prefix="request")


async def in_thread(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs)` in the pool, in a copy of the caller's context."""
    context = contextvars.copy_context()
    work = functools.partial(context.run, call, *args, **kwargs)
    future = asyncio.get_running_loop().run_in_executor(_pool, work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])  # the call runs on: let it end first
        raise
