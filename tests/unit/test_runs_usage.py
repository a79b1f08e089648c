"""Token usage an agent reports (`usage.reported`, domain/runs/usage.py): checked when it is
recorded, summed per model on the run, the agent's costs apart from the tokens it gave no
cost for."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import Invalid
from domain.runs.usage import token_totals
from tests.unit.helpers import claim, output, submit

REPORT = {"model": "m1", "input_tokens": 100, "output_tokens": 20, "cached_input_tokens": 5}


def claimed():  # type: ignore[no-untyped-def]
    run = submit()
    claim(run)
    run.collect_events()
    return run


def test_reports_add_up_per_model_with_the_agents_costs_apart() -> None:
    run = claimed()

    output(
        run,
        ("usage.reported", {**REPORT, "cost_usd": 0.5}),
        ("usage.reported", {**REPORT, "cached_input_tokens": 0}),
        ("usage.reported", {"model": "m2", "input_tokens": 1, "output_tokens": 2}),
        ("usage.reported", {**REPORT, "cost_usd": 0.25}),
    )

    assert run.usage["m1"] == {
        "input_tokens": 300,
        "output_tokens": 60,
        "cached_input_tokens": 10,
        "agent_cost_usd": 0.75,
        "unpriced": {"input_tokens": 100, "output_tokens": 20, "cached_input_tokens": 0},
        "reports": 3,
    }
    assert run.usage["m2"]["unpriced"] == {
        "input_tokens": 1,
        "output_tokens": 2,
        "cached_input_tokens": 0,
    }
    assert token_totals(run.usage) == {
        "input_tokens": 301,
        "output_tokens": 62,
        "cached_input_tokens": 10,
        "by_model": {
            "m1": {"input_tokens": 300, "output_tokens": 60, "cached_input_tokens": 10},
            "m2": {"input_tokens": 1, "output_tokens": 2, "cached_input_tokens": 0},
        },
    }


def test_a_run_without_reports_has_zero_totals() -> None:
    assert token_totals(submit().usage) == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": 0,
        "by_model": {},
    }


BAD: list[tuple[str, dict[str, Any]]] = [
    ("no-model", {k: v for k, v in REPORT.items() if k != "model"}),
    ("empty-model", {**REPORT, "model": ""}),
    ("long-model", {**REPORT, "model": "m" * 201}),
    ("model-number", {**REPORT, "model": 7}),
    ("no-input", {k: v for k, v in REPORT.items() if k != "input_tokens"}),
    ("no-output", {k: v for k, v in REPORT.items() if k != "output_tokens"}),
    ("negative", {**REPORT, "output_tokens": -1}),
    ("fraction", {**REPORT, "input_tokens": 1.5}),
    ("bool", {**REPORT, "input_tokens": True}),
    ("text-count", {**REPORT, "cached_input_tokens": "5"}),
    ("negative-cost", {**REPORT, "cost_usd": -0.01}),
    ("text-cost", {**REPORT, "cost_usd": "1.00"}),
    ("bool-cost", {**REPORT, "cost_usd": False}),
    ("unknown-field", {**REPORT, "tokens": 5}),
]


@pytest.mark.parametrize(("label", "data"), BAD, ids=[label for label, _ in BAD])
def test_a_malformed_report_is_invalid_and_nothing_of_its_batch_is_recorded(
    label: str, data: dict[str, Any]
) -> None:
    run = claimed()

    with pytest.raises(Invalid):
        output(run, ("log", {"message": "before"}), ("usage.reported", data))

    assert run.collect_events() == [] and run.usage == {}


def test_cached_tokens_and_cost_may_be_left_out_or_null() -> None:
    run = claimed()

    output(
        run,
        ("usage.reported", {"model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": None}),
    )

    assert run.usage["m"]["cached_input_tokens"] == 0
    assert run.usage["m"]["unpriced"]["input_tokens"] == 1
