"""Token usage an agent reports (`usage.reported`, a runner output event): its check, and
what it adds to the run's totals.

`usage.reported {model, input_tokens, output_tokens, cached_input_tokens?, cost_usd?}`:
`input_tokens` counts input not read from a cache, `cached_input_tokens` input read from
one; `cost_usd` is the agent's own figure for this report, when it gives one. A run keeps,
per model, the token sums, the sum of the costs the agent gave, and the tokens of the
reports that came without one (which an operator's price table may price:
api/service/usage.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain.errors import Invalid

if TYPE_CHECKING:
    from datetime import datetime

    from domain.runs.aggregate import Run

USAGE_REPORTED = "usage.reported"
TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens")
FIELDS = frozenset({"model", *TOKENS, "cost_usd"})
MAX_MODEL = 200
MAX_TOKENS = 2**53 - 1


def check_usage(data: dict[str, Any]) -> None:
    """Invalid unless `data` is a well-formed usage report."""
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise Invalid(f"usage.reported has no field {unknown[0]!r}.", "events")
    model = data.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL:
        raise Invalid(
            f"usage.reported needs a model: a name of 1 to {MAX_MODEL} characters.", "events"
        )
    for name in TOKENS:
        value = data.get(name, 0 if name == "cached_input_tokens" else None)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
            raise Invalid(
                f"usage.reported needs {name}: a whole number of tokens, 0 or more.", "events"
            )
    cost = data.get("cost_usd")
    if cost is not None and (
        isinstance(cost, bool) or not isinstance(cost, int | float) or not 0 <= cost < 1e12
    ):
        raise Invalid("usage.reported's cost_usd must be a number of dollars, 0 or more.", "events")


def empty() -> dict[str, Any]:
    """One model's totals before any report."""
    return {
        **dict.fromkeys(TOKENS, 0),
        "agent_cost_usd": 0.0,
        "unpriced": dict.fromkeys(TOKENS, 0),  # tokens of reports without a cost
        "reports": 0,
    }


def add(totals: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """One model's totals with a report added (a new dict: states are never shared)."""
    counts = {name: int(data.get(name) or 0) for name in TOKENS}
    cost = data.get("cost_usd")
    unpriced = totals["unpriced"]
    if cost is None:
        unpriced = {name: unpriced[name] + counts[name] for name in TOKENS}
    return {
        **{name: totals[name] + counts[name] for name in TOKENS},
        "agent_cost_usd": totals["agent_cost_usd"] + (float(cost) if cost is not None else 0.0),
        "unpriced": unpriced,
        "reports": totals["reports"] + 1,
    }


def apply_usage(run: Run, data: dict[str, Any], _at: datetime) -> None:
    """What a `usage.reported` adds to the run (applied on every replay: no checks)."""
    model = data["model"]
    run.usage = {**run.usage, model: add(run.usage.get(model) or empty(), data)}


def token_totals(usage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run read model's `usage`: token sums over every model, and per model."""
    return {
        **{name: sum(m[name] for m in usage.values()) for name in TOKENS},
        "by_model": {
            model: {name: m[name] for name in TOKENS} for model, m in sorted(usage.items())
        },
    }
