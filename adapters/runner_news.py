"""What the server tells one runner session while it works: resolved gates, steering
directives, and the end of its lease. Two sources feed it (the run's stream, and each
heartbeat answer as the fallback) and it keeps what they say once; the session's threads
wait on it. Standard library only, like the rest of the reference runner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

FOR_THE_RUNNER = ("redirect", "amend")  # the directives a runner applies (`stop` cancels)
# Stream events after which this lease is gone: stop the agent now, report nothing.
LEASE_ENDING = {
    "run.cancelled": "the run was cancelled",
    "lease.expired": "the lease expired",
    "run.claimed": "the run was claimed again",
}


class News:
    """The session's news, guarded by one condition that every change notifies."""

    def __init__(
        self, lease_id: str | None = None, directives: list[dict[str, Any]] | None = None
    ) -> None:
        self.lease_id = lease_id  # this session's lease: another claim's ends it
        self._changed = threading.Condition()
        self.ended = threading.Event()  # the lease is gone: stop, and report nothing
        self.paused = threading.Event()  # the run is paused: its agent waits, suspended
        self.why = ""
        self._resolutions: dict[str, dict[str, Any]] = {}
        self._known: set[str] = set()
        self._waiting: list[dict[str, Any]] = []  # directives not yet taken into a turn
        for directive in directives or []:
            self.directive(directive)

    def end(self, why: str) -> None:
        """The lease is lost (cancelled, stopped, expired, claimed again); the first reason
        given is kept."""
        with self._changed:
            if not self.ended.is_set():
                self.why = why
                self.ended.set()
            self._changed.notify_all()

    def resolution(self, gate: dict[str, Any]) -> None:
        """A gate's resolution (from `gate.resolved` or a heartbeat's `gates`)."""
        gate_id = gate.get("gate_id")
        if not isinstance(gate_id, str):
            return
        with self._changed:
            self._resolutions.setdefault(
                gate_id, {k: gate.get(k) for k in ("gate_id", "decision", "answer", "scope")}
            )
            self._changed.notify_all()

    def directive(self, directive: dict[str, Any]) -> None:
        """A redirect or amendment for the agent (from `steering.directive`, a claim's or a
        heartbeat's `directives`); each directive is kept once, in arrival order."""
        directive_id = directive.get("directive_id")
        if directive.get("kind") not in FOR_THE_RUNNER or not isinstance(directive_id, str):
            return
        with self._changed:
            if directive_id in self._known:
                return
            self._known.add(directive_id)
            self._waiting.append(
                {k: directive.get(k) for k in ("directive_id", "kind", "instruction")}
            )
            self._changed.notify_all()

    def heard(self, kind: str, envelope: dict[str, Any]) -> None:
        """One event of the run's stream (its SSE event name and envelope)."""
        data = envelope.get("data") or {}
        if kind == "gate.resolved":
            self.resolution(data)
        elif kind == "steering.directive":
            self.directive(data)
        elif kind == "run.claimed" and data.get("lease_id") == self.lease_id:
            return  # our own claim, replayed by a stream that started before it
        elif kind in ("run.paused", "run.resumed"):
            with self._changed:
                (self.paused.set if kind == "run.paused" else self.paused.clear)()
                self._changed.notify_all()
        elif kind in LEASE_ENDING:
            self.end(LEASE_ENDING[kind])

    def heartbeat(self, answer: dict[str, Any] | None) -> None:
        """A heartbeat answer's `gates` and `directives` (the fallback for a lost stream)."""
        for gate in (answer or {}).get("gates") or []:
            self.resolution(gate)
        for directive in (answer or {}).get("directives") or []:
            self.directive(directive)

    def take_directives(self) -> list[dict[str, Any]]:
        """The directives that arrived since the last take, oldest first."""
        with self._changed:
            taken, self._waiting = self._waiting, []
            return taken

    def redirect_waiting(self) -> bool:
        """True when a redirect waits for the next turn (the current one must stop)."""
        with self._changed:
            return any(d["kind"] == "redirect" for d in self._waiting)

    def directives_waiting(self) -> bool:
        """True when any directive waits for the next turn."""
        with self._changed:
            return bool(self._waiting)

    def wait(self, timeout: float) -> None:
        """Sleep until something changes, or `timeout` seconds."""
        with self._changed:
            self._changed.wait(timeout)

    def wait_for_resolution(
        self, gate_id: str, give_up: Callable[[], bool]
    ) -> dict[str, Any] | None:
        """The gate's resolution once it arrives; None if the lease ends or `give_up()`
        says so first (checked at least every 0.2 s)."""
        with self._changed:
            while True:
                found = self._resolutions.get(gate_id)
                if found is not None:
                    return found
                if self.ended.is_set() or give_up():
                    return None
                self._changed.wait(0.2)
