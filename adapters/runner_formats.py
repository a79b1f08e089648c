"""The reference runner's readers of agent CLIs' structured output (`--format`): each turns
the JSON lines an agent prints on stdout into runledger's runner events. Standard library
only, like the rest of the reference runner.

- `lines` (the default): every line is `tool.output` (the runner does that itself).
- `claude-stream-json`: Claude Code's `claude -p --output-format stream-json --verbose`
  (add `--include-partial-messages` for `agent.message.delta`).
- `codex-json`: Codex's `codex exec --json`.

A reader never fails: a line that is not JSON, is cut off, or is of a kind it does not know
becomes a `log` event with the line itself (`{"stream": "stdout", "text": …}`), so nothing
an agent prints is lost. Texts are cut at MAX_TEXT characters (saying so).

The events (docs/api.md, "Structured agent output", has the table):
- `agent.message {role, text, message_id?}`: role `assistant`, or `thinking` / `reasoning`;
- `agent.message.delta {text, index?}`;
- `tool.call {call_id, name, input}` and `tool.result {call_id, output?, is_error?,
  exit_code?, status?}`; a command the agent ran is `tool.call` (name `shell`), its output
  as `tool.output {stream: "stdout", text, call_id}`, then `tool.result`;
- `step.started {name: "agent.turn", turn}` and `step.completed {name: "agent.turn", turn,
  error?}` around each model turn;
- `usage.reported {model, input_tokens, output_tokens, cached_input_tokens, cost_usd?}`:
  `input_tokens` counts input not read from a cache, `cached_input_tokens` input read from
  one (so that a price table applies to each as it is).
"""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("lines", "claude-stream-json", "codex-json")
MAX_TEXT = 16_000
Event = tuple[str, dict[str, Any]]


def cut(text: str) -> str:
    """A text no longer than MAX_TEXT characters (a longer one says how much was cut)."""
    if len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"… [{len(text) - MAX_TEXT} more characters]"


MAX_EVENT = 64_000  # characters of one event's JSON data at most (a tool's input can be big)


def bounded(event: Event) -> Event:
    """The event, or, when its data is over MAX_EVENT characters of JSON, its short scalar
    fields with the rest as cut JSON text under `truncated`."""
    kind, data = event
    encoded = json.dumps(data)
    if len(encoded) <= MAX_EVENT:
        return event
    kept = {
        k: v
        for k, v in data.items()
        if isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 200)
    }
    return (kind, {**kept, "truncated": cut(encoded)})


def raw(line: str) -> Event:
    """A line kept as it is: a `log` event."""
    return ("log", {"stream": "stdout", "text": cut(line)})


def as_count(value: Any) -> int:
    """A token count as a non-negative int (0 for anything else)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def as_cost(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


class Reader:
    """Reads one turn of the runner's command (a fresh reader per turn)."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model  # the run's model, for formats that do not name theirs

    def feed(self, line: str) -> list[Event]:
        """The events of one stdout line (without its newline)."""
        text = line.strip()
        if not text:
            return []
        try:
            found = json.loads(text)
        except ValueError:
            return [raw(line)]
        if not isinstance(found, dict) or not isinstance(found.get("type"), str):
            return [raw(line)]
        try:
            events = self.read(found)
        except (KeyError, TypeError, ValueError, AttributeError):
            return [raw(line)]  # a kind it knows, in a shape it does not
        return [raw(line)] if events is None else events

    def read(self, found: dict[str, Any]) -> list[Event] | None:
        """The events of one decoded line; None for a kind this reader does not know."""
        raise NotImplementedError

    def finish(self) -> list[Event]:
        """The events still owed when the command's output ends (a turn left open…)."""
        return []


def usage_report(
    model: str | None, input_tokens: int, output_tokens: int, cached: int, cost: float | None
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "model": model or "unknown",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_input_tokens": cached,
    }
    if cost is not None:
        report["cost_usd"] = cost
    return report


def flatten(content: Any) -> str:
    """A tool result's content as text (a string, or a list of text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else json.dumps(content)


def reader(fmt: str, model: str | None) -> Reader | None:
    """A fresh reader of `fmt` (None for `lines`)."""
    from adapters.agent_claude import ClaudeStreamJson
    from adapters.agent_codex import CodexJson

    if fmt == "claude-stream-json":
        return ClaudeStreamJson(model)
    if fmt == "codex-json":
        return CodexJson(model)
    if fmt == "lines":
        return None
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
