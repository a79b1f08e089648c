"""api/threads.py in_thread: what anyio's thread hand-off promised, kept."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from api.threads import in_thread

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_the_call_runs_off_the_loop_with_the_callers_context_variables() -> None:
    async def main() -> tuple[str, bool]:
        WHO.set("alice")
        loop_thread = threading.get_ident()
        return await in_thread(lambda: (WHO.get(), threading.get_ident() != loop_thread))

    assert asyncio.run(main()) == ("alice", True)


def test_the_calls_changes_to_context_variables_stay_in_the_call() -> None:
    async def main() -> str:
        WHO.set("alice")
        await in_thread(WHO.set, "mallory")
        return WHO.get()

    assert asyncio.run(main()) == "alice"


def test_an_error_in_the_call_is_raised_to_the_caller() -> None:
    async def main() -> None:
        await in_thread(int, "not a number")

    with pytest.raises(ValueError):
        asyncio.run(main())


def test_a_cancelled_caller_waits_for_the_call_to_end_before_it_is_cancelled() -> None:
    ended: list[float] = []

    def slow() -> None:
        time.sleep(0.3)
        ended.append(time.monotonic())

    async def main() -> float:
        task = asyncio.create_task(in_thread(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic()

    cancelled_at = asyncio.run(main())
    assert ended and ended[0] <= cancelled_at  # the call had ended when the caller went on
