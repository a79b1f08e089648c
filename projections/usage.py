"""The usage read model (adapters/readmodels/usage.py): the token usage agents report
(`usage.reported`), summed per run, UTC day and model.

It notes each run's owner, project and parent from its submission, and adds up each
batch's reports before writing, one row per run, day and model. Runner output is most of
the log: a report is found by its type's name in the stored state before anything is
decoded.
"""

from __future__ import annotations

from typing import Any

from adapters import readmodels
from adapters.db import Cursor, StoredRow
from adapters.readmodels.usage import SUMS
from adapters.stored import current_state
from domain.runs import Run
from domain.runs.usage import TOKENS, USAGE_REPORTED

_OUTPUT = Run.OutputRecorded.TOPIC
_SUBMITTED = Run.Submitted.TOPIC
_MARK = f'"{USAGE_REPORTED}"'.encode()


class UsageProjection:
    """Sums the usage agents report."""

    name = "usage"
    tables: tuple[str, ...] = ("usage_runs", "usage_view")

    def forget(self) -> None:
        """Nothing is held in memory."""

    def reset(self, cur: Cursor) -> None:
        """Empty the views and rewind, for a rebuild."""
        readmodels.reset(cur, "usage_view", self.name)
        readmodels.reset(cur, "usage_runs", self.name)

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None:
        """Note new runs, and add up this batch's reports."""
        sums: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in rows:
            if row.topic == _SUBMITTED:
                state = current_state(row.topic, row.state)
                run_id = str(row.run_id)
                readmodels.note_run(
                    cur, run_id, state["owner"], state.get("project_id"), state.get("parent_run_id")
                )
            elif row.topic == _OUTPUT and _MARK in row.state:
                state = current_state(row.topic, row.state)
                if state.get("kind") != USAGE_REPORTED:
                    continue
                data = state["data"]
                key = (str(row.run_id), state["timestamp"][:10], data["model"])
                into = sums.setdefault(key, dict.fromkeys(SUMS, 0))
                add(into, data)
        for (run_id, day, model), added in sums.items():
            readmodels.add_usage(cur, run_id, day, model, added)


def add(into: dict[str, Any], data: dict[str, Any]) -> None:
    """Add one report to a batch's sums."""
    cost = data.get("cost_usd")
    for name in TOKENS:
        count = int(data.get(name) or 0)
        into[name] += count
        if cost is None:
            into[f"unpriced_{name}"] += count
    into["agent_cost_usd"] += float(cost) if cost is not None else 0.0
    into["reports"] += 1
