"""A command that keeps losing the race for its run, on a SQLite file and a real PostgreSQL.

The engine (api/service/engine.py `_load_decide_save`) saves a command's events at the
version it decided on; when another process took that version first, it reloads and decides
again, a bounded number of times (SAVE_ATTEMPTS), then gives up with Conflict ("The run is
changing too fast"), which the HTTP layer answers 409. Nothing of the command is stored.

The race is real: just before each of the engine's saves of the run, another process's
engine (a second runtime on the same database) appends to that run, so the store refuses the
save's version. Only the injection point, the engine's recorder's group write, is patched.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from api.config import Config
from api.http.app import create_app
from api.service.engine import SAVE_ATTEMPTS, Engine
from api.service.runtime import Runtime
from domain.errors import Conflict

RUNNER = "runner-1"
TOO_FAST = "The run is changing too fast; try again."


def output(text: str) -> list[tuple[str, dict[str, Any]]]:
    """One runner output event saying `text`."""
    return [("agent.message.delta", {"text": text})]


def claimed_run(engine: Engine) -> tuple[UUID, int]:
    """A run claimed by RUNNER: its id and fencing token."""
    run_id = engine.submit_run("alice", "keep losing the race").run_id
    _, lease = engine.claim_run(run_id, "r1", runner=RUNNER)
    return run_id, lease.fencing_token


class Rival:
    """Another process that appends to the run just before each of `engine`'s saves of it,
    `budget` times at most; counts those saves (`tries`) and its own appends (`writes`)."""

    def __init__(
        self, engine: Engine, rival: Engine, run_id: UUID, token: int, budget: int
    ) -> None:
        self.rival, self.run_id, self.token = rival, run_id, token
        self.budget = budget
        self.tries = 0
        self.writes = 0
        self._write: Callable[..., Any] = engine.recorder.append_group

    def append_group(self, group: list[Any], writer: bool = False) -> Any:
        """The engine's write of a group, after the rival's own append to the same run."""
        if any(a.aggregate_id == self.run_id for a in group):
            self.tries += 1
            if self.writes < self.budget:
                # In a context of its own: another process knows nothing of this one's
                # request (its idempotency receipt above all).
                contextvars.Context().run(
                    self.rival.record_output,
                    self.run_id,
                    RUNNER,
                    self.token,
                    output(f"rival-{self.writes}"),
                )
                self.writes += 1
        return self._write(group, writer)


@contextmanager
def racing(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, rival: Engine, run_id: UUID, token: int
) -> Iterator[Rival]:
    """A rival that wins the race SAVE_ATTEMPTS times and then lets the engine's saves be:
    a loop that tried once more than its bound would succeed, so no test can pass by luck."""
    racer = Rival(engine, rival, run_id, token, budget=SAVE_ATTEMPTS)
    with monkeypatch.context() as patch:
        patch.setattr(engine.recorder, "append_group", racer.append_group)
        yield racer


def texts(engine: Engine, run_id: UUID) -> list[str]:
    """The texts of the run's stored output events, in order, read from the store."""
    events = [engine.mapper.to_domain_event(s) for s in engine.recorder.select_events(run_id)]
    return [e.data["text"] for e in events if getattr(e, "kind", None) == "agent.message.delta"]


RIVALS = [f"rival-{i}" for i in range(SAVE_ATTEMPTS)]


def test_a_command_that_keeps_losing_the_race_gives_up_with_a_conflict_after_bounded_tries(
    runtime: Runtime, second_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    with (
        racing(monkeypatch, engine, second_runtime.engine, run_id, token) as racer,
        pytest.raises(Conflict) as raised,
    ):
        engine.record_output(run_id, RUNNER, token, output("mine"))
    assert str(raised.value) == TOO_FAST
    assert raised.value.status == "in_progress"
    assert racer.tries == SAVE_ATTEMPTS
    assert racer.writes == SAVE_ATTEMPTS


def test_a_command_that_gave_up_stored_nothing(
    runtime: Runtime, second_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    with (
        racing(monkeypatch, engine, second_runtime.engine, run_id, token),
        pytest.raises(Conflict),
    ):
        engine.record_output(run_id, RUNNER, token, output("mine"))
    assert texts(engine, run_id) == RIVALS
    assert engine.get_run(run_id).version == 2 + SAVE_ATTEMPTS  # submitted, claimed, rivals


def test_a_command_that_gave_up_succeeds_when_tried_again_after_the_race(
    runtime: Runtime, second_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = runtime.engine
    run_id, token = claimed_run(engine)
    with racing(monkeypatch, engine, second_runtime.engine, run_id, token):
        with pytest.raises(Conflict):
            engine.record_output(run_id, RUNNER, token, output("mine"))
        appended = engine.record_output(run_id, RUNNER, token, output("mine"))
    assert appended.sequence == 2 + SAVE_ATTEMPTS + 1
    assert texts(engine, run_id) == [*RIVALS, "mine"]


def post_output_while_racing(
    store_url: str,
    data_dir: Path,
    rival: Engine,
    monkeypatch: pytest.MonkeyPatch,
    headers: dict[str, str] | None = None,
    times: int = 1,
) -> tuple[list[httpx.Response], Rival, list[str]]:
    """Start the whole HTTP application in this process on the store (its lifespan too),
    claim a run, and POST the runner's output `times` while `rival` races the engine: the
    answers, the race, and the run's stored output texts afterwards."""

    async def main() -> tuple[list[httpx.Response], Rival, list[str]]:
        config = Config(database_url=store_url, data_dir=data_dir, api_keys=f"kr={RUNNER}:runner")
        app = create_app(config)
        async with app.router.lifespan_context(app):
            engine: Engine = app.state.services.engine
            run_id, token = claimed_run(engine)
            event = {"type": "agent.message.delta", "data": {"text": "mine"}}
            body = {"fencing_token": token, "events": [event]}
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://runledger",
                headers={"Authorization": "Bearer kr", **(headers or {})},
            ) as client:
                with racing(monkeypatch, engine, rival, run_id, token) as racer:
                    answers = []
                    for _ in range(times):
                        answers.append(await client.post(f"/api/runs/{run_id}/events", json=body))
            return answers, racer, texts(engine, run_id)

    return asyncio.run(main())


def test_a_run_changing_too_fast_is_answered_409_conflict_not_500(
    store_url: str, tmp_path: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    [answer], racer, stored = post_output_while_racing(
        store_url, tmp_path / "app", runtime.engine, monkeypatch
    )
    assert answer.status_code == 409, answer.text
    assert answer.json() == {"error": "conflict", "detail": TOO_FAST, "status": "in_progress"}
    assert racer.tries == SAVE_ATTEMPTS
    assert stored == RIVALS


def test_an_idempotent_request_that_gave_up_runs_afresh_when_retried_with_its_key(
    store_url: str, tmp_path: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of it was kept, not even its answer: the retry runs the command."""
    headers = {"Idempotency-Key": "lose-then-win"}
    [lost, again], _, stored = post_output_while_racing(
        store_url, tmp_path / "app", runtime.engine, monkeypatch, headers, times=2
    )
    assert lost.status_code == 409, lost.text
    assert again.status_code == 200, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["sequence"] == 2 + SAVE_ATTEMPTS + 1
    assert stored == [*RIVALS, "mine"]
