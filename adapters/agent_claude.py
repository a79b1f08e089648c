"""Claude Code's `claude -p --output-format stream-json --verbose`, read into runner events
(adapters/runner_formats.py says which)."""

from __future__ import annotations

from typing import Any

from adapters.runner_formats import Event, Reader, as_cost, as_count, cut, flatten, usage_report


class ClaudeStreamJson(Reader):
    """`claude -p --output-format stream-json --verbose`: a `system` init line, then
    `assistant` and `user` messages (text, thinking, tool_use and tool_result blocks; one
    line per block, the same message id on each), optional `stream_event` lines, and a final
    `result` with the session's `usage` and `total_cost_usd` (`modelUsage` per model)."""

    def __init__(self, model: str | None = None) -> None:
        super().__init__(model)
        self.turn = 0
        self.open_turn = False
        self.message_id: str | None = None  # the assistant message of the open turn
        self.usage: dict[str, dict[str, Any]] = {}  # message id -> its model and usage
        self.reported = False

    def read(self, found: dict[str, Any]) -> list[Event] | None:
        kind = found["type"]
        if kind == "system":
            if found.get("subtype") == "init" and isinstance(found.get("model"), str):
                self.model = found["model"]
            keep = ("subtype", "session_id", "model", "cwd", "permissionMode")
            return [("log", {"source": "claude", **{k: found[k] for k in keep if k in found}})]
        if kind == "assistant":
            return self._assistant(found["message"])
        if kind == "user":
            return self._user(found["message"])
        if kind == "stream_event":
            return self._stream_event(found["event"])
        if kind == "result":
            return self._result(found)
        return None

    def _assistant(self, message: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        message_id = message.get("id")
        if not self.open_turn or message_id is None or message_id != self.message_id:
            events += self._close_turn()
            self.turn += 1
            self.open_turn, self.message_id = True, message_id
            events.append(("step.started", {"name": "agent.turn", "turn": self.turn}))
        if isinstance(message.get("usage"), dict) and message_id is not None:
            model = message.get("model") or self.model
            self.usage[message_id] = {"model": model, **message["usage"]}
        ids = {"message_id": message_id} if message_id else {}
        for block in message.get("content") or []:
            if block.get("type") == "text":
                events.append(
                    ("agent.message", {"role": "assistant", "text": cut(block["text"]), **ids})
                )
            elif block.get("type") == "thinking":
                text = cut(str(block.get("thinking", "")))
                events.append(("agent.message", {"role": "thinking", "text": text, **ids}))
            elif block.get("type") == "tool_use":
                call = {"call_id": block["id"], "name": block["name"], "input": block.get("input")}
                events.append(("tool.call", call))
        return events

    def _user(self, message: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        content = message.get("content")
        if isinstance(content, str):
            return [("log", {"source": "claude", "role": "user", "text": cut(content)})]
        for block in content or []:
            if block.get("type") == "tool_result":
                result = {
                    "call_id": block["tool_use_id"],
                    "output": cut(flatten(block.get("content"))),
                    "is_error": bool(block.get("is_error", False)),
                }
                events.append(("tool.result", result))
            elif block.get("type") == "text":
                events.append(
                    ("log", {"source": "claude", "role": "user", "text": cut(block["text"])})
                )
        return events

    def _stream_event(self, event: dict[str, Any]) -> list[Event]:
        delta = event.get("delta") or {}
        if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
            return [
                ("agent.message.delta", {"text": delta["text"], "index": event.get("index", 0)})
            ]
        return []  # message_start, content_block_start/stop, message_delta, …: no news

    def _result(self, found: dict[str, Any]) -> list[Event]:
        events = self._close_turn()
        summary: dict[str, Any] = {
            k: found[k] for k in ("subtype", "is_error", "num_turns", "duration_ms") if k in found
        }
        events.append(
            ("log", {"source": "claude", "result": summary.pop("subtype", None), **summary})
        )
        events += self._usage_of_result(found)
        self.reported = True
        return events

    def _usage_of_result(self, found: dict[str, Any]) -> list[Event]:
        """The session's usage: per model from `modelUsage` when it names them, else the
        `usage` totals under the session's model, with `total_cost_usd`."""
        per_model = found.get("modelUsage")
        if isinstance(per_model, dict) and per_model:
            return [
                (
                    "usage.reported",
                    usage_report(
                        model,
                        as_count(u.get("inputTokens"))
                        + as_count(u.get("cacheCreationInputTokens")),
                        as_count(u.get("outputTokens")),
                        as_count(u.get("cacheReadInputTokens")),
                        as_cost(u.get("costUSD")),
                    ),
                )
                for model, u in per_model.items()
                if isinstance(u, dict)
            ]
        usage = found.get("usage")
        if not isinstance(usage, dict):
            return self._usage_of_messages()
        return [
            (
                "usage.reported",
                claude_report(self.model, usage, as_cost(found.get("total_cost_usd"))),
            )
        ]

    def _usage_of_messages(self) -> list[Event]:
        """Without a final result (the agent was cut short): the sum of its messages' last
        usage each, per model, with no cost."""
        totals: dict[str, dict[str, Any]] = {}
        for usage in self.usage.values():
            model = usage.get("model") or self.model or "unknown"
            report = claude_report(model, usage, None)
            into = totals.setdefault(
                model, {**report, "input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0}
            )
            for key in ("input_tokens", "output_tokens", "cached_input_tokens"):
                into[key] += report[key]
        return [("usage.reported", report) for report in totals.values()]

    def _close_turn(self) -> list[Event]:
        if not self.open_turn:
            return []
        self.open_turn = False
        return [("step.completed", {"name": "agent.turn", "turn": self.turn})]

    def finish(self) -> list[Event]:
        if self.reported:
            return []
        return self._close_turn() + self._usage_of_messages()


def claude_report(model: str | None, usage: dict[str, Any], cost: float | None) -> dict[str, Any]:
    return usage_report(
        model,
        as_count(usage.get("input_tokens")) + as_count(usage.get("cache_creation_input_tokens")),
        as_count(usage.get("output_tokens")),
        as_count(usage.get("cache_read_input_tokens")),
        cost,
    )
