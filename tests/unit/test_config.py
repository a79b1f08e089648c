"""Server configuration read from the environment."""

from __future__ import annotations

import time

import pytest

from api.config import DEFAULT_GC_THRESHOLD, Config, parse_gc_threshold
from api.service.metrics import CollectorClock


def test_the_collectors_thresholds_have_a_default() -> None:
    assert Config.from_env({}).gc_threshold == DEFAULT_GC_THRESHOLD == (2000, 10, 10)
    assert parse_gc_threshold("  ") == DEFAULT_GC_THRESHOLD


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5000", (5000, *DEFAULT_GC_THRESHOLD[1:])),
        ("5000, 20", (5000, 20, DEFAULT_GC_THRESHOLD[2])),
        ("5000,20,30", (5000, 20, 30)),
        ("0", (0, *DEFAULT_GC_THRESHOLD[1:])),  # 0 turns automatic collection off, as in gc
    ],
)
def test_the_thresholds_left_out_keep_the_defaults(
    text: str, expected: tuple[int, int, int]
) -> None:
    assert parse_gc_threshold(text) == expected
    assert Config.from_env({"RUNLEDGER_GC_THRESHOLD": text}).gc_threshold == expected


@pytest.mark.parametrize(
    "text", ["many", "1,2,3,4", "-5", "1.5", "700;10", ",", "700,", "7²", "2147483648"]
)
def test_a_malformed_threshold_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match="RUNLEDGER_GC_THRESHOLD wants"):
        parse_gc_threshold(text)


def test_the_largest_threshold_gc_takes_is_taken() -> None:
    assert parse_gc_threshold("2147483647,0") == (2**31 - 1, 0, DEFAULT_GC_THRESHOLD[2])


def test_the_collector_clock_adds_up_each_generations_collections() -> None:
    clock = CollectorClock()
    for generation in (0, 0, 2):
        clock("start", {"generation": generation})
        time.sleep(0.002)
        clock("stop", {"generation": generation, "collected": 0, "uncollectable": 0})
    assert clock.collections == [2, 0, 1]
    assert clock.seconds[0] >= 0.004 and clock.seconds[1] == 0 and clock.seconds[2] >= 0.002
    assert clock.seconds[0] >= clock.longest[0] >= 0.002
    text = "\n".join(clock.render())
    assert 'runledger_gc_collections_total{generation="0"} 2' in text
    assert 'runledger_gc_collections_total{generation="1"} 0' in text
    assert "# TYPE runledger_gc_longest_pause_seconds gauge" in text
