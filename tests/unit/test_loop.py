"""adapters/loop.py: when a Loop's tick runs, and what it is told about why."""

from __future__ import annotations

import queue
import threading
import time

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


def test_a_settling_loop_gathers_the_wakes_of_its_settle_time_into_one_tick() -> None:
    ticks: queue.Queue[float] = queue.Queue()
    loop = Loop("test", lambda: ticks.put(time.monotonic()), FOREVER, settle=0.3)
    loop.start()
    try:
        first = ticks.get(timeout=10)
        for _ in range(5):  # within the settle time: one tick after it, not five
            loop.wake()
            time.sleep(0.01)
        second = ticks.get(timeout=10)
        assert second - first >= 0.3
        assert ticks.empty()
        time.sleep(0.4)
        assert ticks.empty()  # no wake after the tick: none until the interval
        loop.wake()  # settled long ago: a tick (the interval never runs out here)
        assert ticks.get(timeout=10) - second >= 0.4
    finally:
        loop.stop()


def test_a_settling_loop_stops_without_waiting_out_its_settle_time() -> None:
    ticked = threading.Event()
    loop = Loop("test", ticked.set, FOREVER, settle=FOREVER)
    loop.start()
    assert ticked.wait(10)
    started = time.monotonic()
    loop.stop()
    assert time.monotonic() - started < 5


def test_a_hurried_loop_ticks_before_its_settle_time_has_run() -> None:
    ticks: queue.Queue[bool] = queue.Queue()
    loop = Loop("test", lambda: ticks.put(loop.timed_out), FOREVER, settle=FOREVER)
    loop.start()
    try:
        assert ticks.get(timeout=10) is False
        loop.wake()  # gathered into the tick after the settle (never, here)
        time.sleep(0.1)
        assert ticks.empty()
        loop.timed_out = True  # (a hurried tick is told it was not timed out)
        loop.hurry()
        assert ticks.get(timeout=10) is False
    finally:
        loop.stop()


def test_the_wakes_before_a_hurry_are_the_hurried_ticks() -> None:
    ticks: queue.Queue[float] = queue.Queue()
    loop = Loop("test", lambda: ticks.put(time.monotonic()), FOREVER, settle=0.3)
    loop.start()
    try:
        ticks.get(timeout=10)
        loop.wake()
        loop.hurry()
        ticks.get(timeout=10)
        time.sleep(0.8)  # the settle ran out: a wake still pending would tick again
        assert ticks.empty()
    finally:
        loop.stop()
