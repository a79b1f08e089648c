"""Schemathesis hooks of tests/e2e/test_openapi.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from typing import Any

import schemathesis

# A claim long-polls up to `wait_seconds` (the contract allows 30) when no run is pending,
# which is every claim here; schemathesis gives up on an answer after 10 s and would count
# the wait as a network error. Longer waits are tested in tests/e2e/test_claim_waiting.py;
# values above 30 are left as they are (they are 400s).
CLAIM_WAIT = 1.0


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """Keep `min_position` to a position a write could have answered with (0 always is),
    and a claim's `wait_seconds` to CLAIM_WAIT.

    A larger `min_position` is a position no write answered with yet: the read waits 5 s for
    the read models and then answers `503 not_caught_up`, as the contract says it must. That
    is the one 5xx a client can ask for on purpose; the no-5xx check would count it, and
    every such case would cost the bounded run 5 s. Values that are not whole numbers are
    left as they are (they are 400s).
    """
    query = case.query
    if isinstance(query, dict):
        value = query.get("min_position")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            query["min_position"] = 0
    body = case.body
    if isinstance(body, dict):
        wait = body.get("wait_seconds")
        if (
            isinstance(wait, (int, float))
            and not isinstance(wait, bool)
            and CLAIM_WAIT < wait <= 30
        ):
            body["wait_seconds"] = CLAIM_WAIT
