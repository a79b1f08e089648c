"""Codex's `codex exec --json`, read into runner events (adapters/runner_formats.py says
which)."""

from __future__ import annotations

from typing import Any

from adapters.runner_formats import Event, Reader, as_count, cut, flatten, usage_report


class CodexJson(Reader):
    """`codex exec --json`: `thread.started`, `turn.started` / `turn.completed` (with the
    turn's `usage`) / `turn.failed`, `item.started` / `item.updated` / `item.completed` for
    agent messages, reasoning, command executions, file changes, MCP tool calls, web
    searches and to-do lists, and `error`. The stream names no model: the run's is used."""

    def __init__(self, model: str | None = None) -> None:
        super().__init__(model)
        self.turn = 0
        self.open_turn = False
        self.called: set[str] = set()  # items whose tool.call was sent

    def read(self, found: dict[str, Any]) -> list[Event] | None:
        kind = found["type"]
        if kind == "thread.started":
            return [("log", {"source": "codex", "thread_id": found.get("thread_id")})]
        if kind == "turn.started":
            events = self._close_turn({})
            self.turn += 1
            self.open_turn = True
            return [*events, ("step.started", {"name": "agent.turn", "turn": self.turn})]
        if kind == "turn.completed":
            usage = found["usage"]
            input_total = as_count(usage.get("input_tokens"))
            cached = min(as_count(usage.get("cached_input_tokens")), input_total)
            report = usage_report(
                self.model, input_total - cached, as_count(usage.get("output_tokens")), cached, None
            )
            return [*self._close_turn({}), ("usage.reported", report)]
        if kind == "turn.failed":
            message = str((found.get("error") or {}).get("message", ""))
            return self._close_turn({"error": cut(message)}) or [
                ("log", {"source": "codex", "level": "error", "message": cut(message)})
            ]
        if kind == "error":
            return [
                (
                    "log",
                    {
                        "source": "codex",
                        "level": "error",
                        "message": cut(str(found.get("message", ""))),
                    },
                )
            ]
        if kind in ("item.started", "item.updated", "item.completed"):
            return self._item(kind.removeprefix("item."), found["item"])
        return None

    def _close_turn(self, extra: dict[str, Any]) -> list[Event]:
        if not self.open_turn:
            return []
        self.open_turn = False
        return [("step.completed", {"name": "agent.turn", "turn": self.turn, **extra})]

    def _item(self, phase: str, item: dict[str, Any]) -> list[Event] | None:
        kind, item_id = item["type"], str(item["id"])
        if kind == "agent_message":
            return (
                [("agent.message", {"role": "assistant", "text": cut(item["text"])})]
                if phase == "completed"
                else []
            )
        if kind == "reasoning":
            return (
                [("agent.message", {"role": "reasoning", "text": cut(item["text"])})]
                if phase == "completed"
                else []
            )
        if kind == "todo_list":
            return (
                [("log", {"source": "codex", "todo": item.get("items", [])})]
                if phase != "started"
                else []
            )
        if kind == "error":
            return [
                (
                    "log",
                    {
                        "source": "codex",
                        "level": "error",
                        "message": cut(str(item.get("message", ""))),
                    },
                )
            ]
        call = self._call(kind, item)
        if call is None:
            return None
        events: list[Event] = []
        if item_id not in self.called:
            self.called.add(item_id)
            events.append(("tool.call", {"call_id": item_id, **call}))
        if phase != "completed":
            return events
        result: dict[str, Any] = {"call_id": item_id, "status": item.get("status")}
        if kind == "command_execution":
            output = item.get("aggregated_output") or ""
            if output:
                events.append(
                    ("tool.output", {"stream": "stdout", "text": cut(output), "call_id": item_id})
                )
            result["exit_code"] = item.get("exit_code")
        elif kind == "mcp_tool_call":
            if item.get("result") is not None:
                result["output"] = cut(
                    flatten(
                        item["result"].get("content")
                        if isinstance(item["result"], dict)
                        else item["result"]
                    )
                )
            if item.get("error") is not None:
                result["is_error"] = True
                result["output"] = cut(str((item["error"] or {}).get("message", item["error"])))
        events.append(("tool.result", result))
        return events

    @staticmethod
    def _call(kind: str, item: dict[str, Any]) -> dict[str, Any] | None:
        if kind == "command_execution":
            return {"name": "shell", "input": {"command": item["command"]}}
        if kind == "file_change":
            return {"name": "apply_patch", "input": {"changes": item.get("changes", [])}}
        if kind == "mcp_tool_call":
            name = f"{item.get('server')}.{item.get('tool')}"
            return {"name": name, "input": item.get("arguments")}
        if kind == "web_search":
            return {"name": "web_search", "input": {"query": item.get("query")}}
        return None

    def finish(self) -> list[Event]:
        return self._close_turn({"error": "the agent's output ended inside the turn"})
