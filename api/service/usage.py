"""Usage and cost: the token usage agents report (`usage.reported`), summed by the usage
read model, priced by the agent's own figures or the operator's price table.

The price table (`RUNLEDGER_PRICES_FILE`) is JSON, one entry per model, in US dollars per
million tokens: `{"claude-sonnet-4-5": {"input": 3, "output": 15, "cached_input": 0.3}}`
(`cached_input` defaults to `input`).

Each figure says where its cost came from (`cost_source`): `agent` when the agent gave
the cost of all of it; `price_table` when some or all of it was priced by the table (the
agent's own figures count as given); `null`, with `cost_usd` null, when some of it has no
price (no figure from the agent, no entry in the table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters import readmodels
from domain.errors import NotFound
from domain.runs.usage import TOKENS

if TYPE_CHECKING:
    from api.service.bootstrap import Services

MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float

    def of(self, unpriced: dict[str, int]) -> float:
        """The price of these tokens."""
        return (
            unpriced["input_tokens"] * self.input
            + unpriced["output_tokens"] * self.output
            + unpriced["cached_input_tokens"] * self.cached_input
        ) / MILLION


PriceTable = dict[str, Price]


def load_prices(path: Path | None) -> PriceTable:
    """The operator's price table ({} without a file); ValueError saying what is wrong."""
    if path is None:
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the price table {path}: {exc}") from None
    if not isinstance(found, dict):
        raise ValueError(f"the price table {path} must be a JSON object of models")
    table: PriceTable = {}
    for model, entry in found.items():
        if not isinstance(entry, dict) or set(entry) - {"input", "output", "cached_input"}:
            raise ValueError(f"{path}: {model!r} needs input, output and cached_input prices")
        prices: dict[str, float] = {}
        for kind in ("input", "output", "cached_input"):
            value = entry.get(kind, entry.get("input"))
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{path}: {model!r}: prices are numbers of dollars, 0 or more")
            prices[kind] = float(value)
        table[model] = Price(**prices)
    return table


def figure(sums: dict[str, Any], model: str | None, prices: PriceTable) -> dict[str, Any]:
    """One figure (a model's, or a total over figures when `model` is None): its tokens,
    its cost and the cost's source."""
    tokens = {name: int(sums[name]) for name in TOKENS}
    unpriced = {name: int(sums[f"unpriced_{name}"]) for name in TOKENS}
    agent_cost = float(sums["agent_cost_usd"])
    if not any(unpriced.values()):
        cost, source = agent_cost, "agent"
    elif model is not None and model in prices:
        cost, source = agent_cost + prices[model].of(unpriced), "price_table"
    else:
        cost, source = None, None
    return {**tokens, "cost_usd": None if cost is None else round(cost, 6), "cost_source": source}


def total(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """The sum of figures: a cost only when every figure has one (no figures: nothing
    spent, no source)."""
    tokens = {name: sum(f[name] for f in figures) for name in TOKENS}
    if not figures:
        return {**tokens, "cost_usd": 0.0, "cost_source": None}
    costs = [f["cost_usd"] for f in figures]
    sources = {f["cost_source"] for f in figures}
    if any(c is None for c in costs):
        return {**tokens, "cost_usd": None, "cost_source": None}
    source = "agent" if sources <= {"agent"} else "price_table"
    return {**tokens, "cost_usd": round(sum(costs), 6), "cost_source": source}


def _merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for row in rows:
        for name, value in row.items():
            if name not in ("key", "model"):
                merged[name] = merged.get(name, 0) + value
    return merged


def run_usage(services: Services, run_id: UUID, owner: str) -> dict[str, Any]:
    """A run's usage by model; a coordinator's includes its children's (each listed)."""
    with services.db.reading() as cur:
        run = readmodels.get_run(cur, str(run_id), owner)
        if run is None:
            raise NotFound("No such run.")
        coordinator = run.get("coordinator_status") is not None
        rows = readmodels.run_usage(cur, str(run_id), with_children=coordinator)
    prices = services.prices
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    models = [
        {"model": model, **figure(_merge(found), model, prices)}
        for model, found in sorted(by_model.items())
    ]
    body: dict[str, Any] = {"run_id": str(run_id), "total": total(models), "models": models}
    if coordinator:
        children: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if row["key"] != str(run_id):
                children.setdefault(row["key"], []).append(row)
        body["children"] = [
            {"run_id": child, **total([figure(r, r["model"], prices) for r in found])}
            for child, found in sorted(children.items())
        ]
    return body


def parse_day(raw: str | None, name: str) -> date | None:
    """A `YYYY-MM-DD` query parameter (None when absent; ValueError when not a day)."""
    if raw is None:
        return None
    if len(raw) != 10:
        raise ValueError(f"{name} must be a day, YYYY-MM-DD.")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be a day, YYYY-MM-DD.") from None


def project_usage(
    services: Services, project_id: UUID, owner: str, since: date | None, until: date | None
) -> dict[str, Any]:
    """A project's usage between two UTC days (inclusive; every day by default): its total,
    by model, and per day."""
    first = (since or date.min).isoformat()
    last = (until or date.max).isoformat()
    with services.db.reading() as cur:
        if readmodels.get_project(cur, str(project_id), owner) is None:
            raise NotFound("No such project.")
        rows = readmodels.project_usage(cur, str(project_id), owner, first, last)
    prices = services.prices
    by_model: dict[str, list[dict[str, Any]]] = {}
    by_day: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
        by_day.setdefault(row["key"], []).append(row)
    models = [
        {"model": model, **figure(_merge(found), model, prices)}
        for model, found in sorted(by_model.items())
    ]
    days = [
        {"day": day, **total([figure(r, r["model"], prices) for r in found])}
        for day, found in sorted(by_day.items())
    ]
    return {
        "project_id": str(project_id),
        "since": None if since is None else since.isoformat(),
        "until": None if until is None else until.isoformat(),
        "total": total(models),
        "models": models,
        "days": days,
    }
