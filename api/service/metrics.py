"""The process's Prometheus counters: events by type, command latency (rendered by
api/http/metrics.py with the live gauges)."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter
from typing import Any

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CollectorClock:
    """The time the cyclic garbage collector stops the process for, per generation: a
    `gc.callbacks` entry. CPython runs one collection at a time, its start and stop
    callbacks included, so the counters need no lock of their own."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        spent = time.perf_counter() - self._started
        generation = info["generation"]
        self.seconds[generation] += spent
        self.collections[generation] += 1
        if spent > self.longest[generation]:
            self.longest[generation] = spent

    def render(self) -> list[str]:
        """Its exposition lines."""
        lines: list[str] = []
        for name, kind, what, values in (
            (
                "gc_seconds_total",
                "counter",
                "Time spent in the cyclic garbage collector.",
                [f"{v:.6f}" for v in self.seconds],
            ),
            (
                "gc_collections_total",
                "counter",
                "Collections, by generation.",
                [str(v) for v in self.collections],
            ),
            (
                "gc_longest_pause_seconds",
                "gauge",
                "The longest collection since start.",
                [f"{v:.6f}" for v in self.longest],
            ),
        ):
            lines += [f"# HELP runledger_{name} {what}", f"# TYPE runledger_{name} {kind}"]
            lines += [f'runledger_{name}{{generation="{g}"}} {v}' for g, v in enumerate(values)]
        return lines


class Metrics:
    """Counters kept in process memory (each process exports its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events = Counter[str]()
        self.latency_buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.collector = CollectorClock()

    def count_events(self, types: list[str]) -> None:
        """Events the change feed saw appended (by any process)."""
        with self._lock:
            self.events.update(types)

    def observe_command(self, seconds: float) -> None:
        """One command's latency (a POST, PATCH or DELETE under /api)."""
        with self._lock:
            self.latency_buckets[bisect_left(BUCKETS, seconds)] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self, subscribers: int, lag: int) -> str:
        """The exposition text."""
        lines = [
            "# HELP runledger_events_total Events appended, by type (seen since start).",
            "# TYPE runledger_events_total counter",
        ]
        with self._lock:
            for kind, count in sorted(self.events.items()):
                lines.append(f'runledger_events_total{{type="{kind}"}} {count}')
            lines += [
                "# HELP runledger_command_seconds Latency of commands (POST/PATCH/DELETE).",
                "# TYPE runledger_command_seconds histogram",
            ]
            total = 0
            for bound, count in zip((*BUCKETS, float("inf")), self.latency_buckets, strict=True):
                total += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'runledger_command_seconds_bucket{{le="{le}"}} {total}')
            lines.append(f"runledger_command_seconds_sum {self.latency_sum:.6f}")
            lines.append(f"runledger_command_seconds_count {self.latency_count}")
        lines += [
            "# HELP runledger_sse_subscribers Open SSE streams in this process.",
            "# TYPE runledger_sse_subscribers gauge",
            f"runledger_sse_subscribers {subscribers}",
            "# HELP runledger_read_model_lag_positions How far the read models trail the log.",
            "# TYPE runledger_read_model_lag_positions gauge",
            f"runledger_read_model_lag_positions {lag}",
            *self.collector.render(),
        ]
        return "\n".join(lines) + "\n"
