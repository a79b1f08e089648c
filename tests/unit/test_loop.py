"""adapters/loop.py: when a Loop's tick runs, and what it is told about why."""

from __future__ import annotations

import queue

from adapters.loop import Loop

FOREVER = 3600.0  # an interval that never runs out within a test


def test_a_loop_ticks_at_once_when_started() -> None:
    seen: queue.Queue[bool] = queue.Queue()
    loop = Loop("test", lambda: seen.put(loop.timed_out), FOREVER)
    loop.start()
    try:
        assert seen.get(timeout=10) is False
    finally:
        loop.stop()


def test_a_loop_told_not_to_start_at_once_ticks_first_when_woken() -> None:
    seen: queue.Queue[bool] = queue.Queue()
    loop = Loop("test", lambda: seen.put(loop.timed_out), FOREVER, at_once=False)
    loop.start()
    try:
        assert seen.empty()
        loop.wake()
        assert seen.get(timeout=10) is False  # woken, not timed out
    finally:
        loop.stop()


def test_a_tick_after_the_interval_ran_out_is_told_it_timed_out() -> None:
    seen: queue.Queue[bool] = queue.Queue()
    loop = Loop("test", lambda: seen.put(loop.timed_out), 0.01, at_once=False)
    loop.start()
    try:
        assert seen.get(timeout=10) is True
    finally:
        loop.stop()
