"""The reference runner's readers of agent CLIs' JSON lines (adapters/runner_formats.py,
agent_claude.py, agent_codex.py).
Given a recorded stream (tests/e2e/agents/streams, written to the CLIs' documented
formats), when it is read line by line, then these runner events come out; garbage and
cut-off lines become `log`, and nothing raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.agent_claude import ClaudeStreamJson
from adapters.agent_codex import CodexJson
from adapters.runner_formats import MAX_EVENT, MAX_TEXT, Reader, bounded, reader

STREAMS = Path(__file__).parents[1] / "e2e" / "agents" / "streams"


def read_all(r: Reader, lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for line in lines:
        events += r.feed(line)
    return events + r.finish()


def lines_of(name: str) -> list[str]:
    return (STREAMS / name).read_text().splitlines()


TURN = {"name": "agent.turn"}

CLAUDE_EXPECTED = [
    (
        "log",
        {
            "source": "claude",
            "subtype": "init",
            "session_id": "6f1c3a52-0000-4c55-9d1e-0c1f2e3d4b5a",
            "model": "claude-sonnet-4-5-20250929",
            "cwd": "/work/repo",
            "permissionMode": "acceptEdits",
        },
    ),
    ("step.started", {**TURN, "turn": 1}),
    (
        "agent.message",
        {"role": "assistant", "text": "I'll look at the file first.", "message_id": "msg_01A"},
    ),
    (
        "tool.call",
        {
            "call_id": "toolu_01",
            "name": "Bash",
            "input": {"command": "cat app.py", "description": "Show app.py"},
        },
    ),
    ("tool.result", {"call_id": "toolu_01", "output": "one\ntwo\nthree", "is_error": False}),
    ("step.completed", {**TURN, "turn": 1}),
    ("step.started", {**TURN, "turn": 2}),
    (
        "agent.message",
        {"role": "thinking", "text": "Replace two with TWO.", "message_id": "msg_01B"},
    ),
    (
        "tool.call",
        {
            "call_id": "toolu_02",
            "name": "Edit",
            "input": {"file_path": "app.py", "old_string": "two", "new_string": "TWO"},
        },
    ),
    (
        "tool.result",
        {"call_id": "toolu_02", "output": "The file app.py has been updated.", "is_error": False},
    ),
    ("step.completed", {**TURN, "turn": 2}),
    ("step.started", {**TURN, "turn": 3}),
    (
        "agent.message",
        {"role": "assistant", "text": "Done: app.py now says TWO.", "message_id": "msg_01C"},
    ),
    ("step.completed", {**TURN, "turn": 3}),
    (
        "log",
        {
            "source": "claude",
            "result": "success",
            "is_error": False,
            "num_turns": 3,
            "duration_ms": 5321,
        },
    ),
    (
        "usage.reported",
        {
            "model": "claude-sonnet-4-5-20250929",
            "input_tokens": 92 + 2100,
            "output_tokens": 117,
            "cached_input_tokens": 4000,
            "cost_usd": 0.0195,
        },
    ),
]

CODEX_EXPECTED = [
    ("log", {"source": "codex", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"}),
    ("step.started", {**TURN, "turn": 1}),
    ("agent.message", {"role": "reasoning", "text": "**Reading app.py**"}),
    (
        "tool.call",
        {"call_id": "item_1", "name": "shell", "input": {"command": "bash -lc 'cat app.py'"}},
    ),
    ("tool.output", {"stream": "stdout", "text": "one\ntwo\nthree\n", "call_id": "item_1"}),
    ("tool.result", {"call_id": "item_1", "status": "completed", "exit_code": 0}),
    ("log", {"source": "codex", "todo": [{"text": "Change two to TWO", "completed": False}]}),
    (
        "tool.call",
        {
            "call_id": "item_3",
            "name": "apply_patch",
            "input": {"changes": [{"path": "app.py", "kind": "update"}]},
        },
    ),
    ("tool.result", {"call_id": "item_3", "status": "completed"}),
    ("tool.call", {"call_id": "item_4", "name": "docs.search", "input": {"q": "style"}}),
    ("tool.result", {"call_id": "item_4", "status": "completed", "output": "no rules"}),
    ("agent.message", {"role": "assistant", "text": "Changed two to TWO in app.py."}),
    ("step.completed", {**TURN, "turn": 1}),
    (
        "usage.reported",
        {
            "model": "gpt-5-codex",
            "input_tokens": 24763 - 24448,
            "output_tokens": 122,
            "cached_input_tokens": 24448,
        },
    ),
    ("step.started", {**TURN, "turn": 2}),
    ("agent.message", {"role": "assistant", "text": "Nothing else to do."}),
    ("step.completed", {**TURN, "turn": 2}),
    (
        "usage.reported",
        {
            "model": "gpt-5-codex",
            "input_tokens": 1000,
            "output_tokens": 10,
            "cached_input_tokens": 0,
        },
    ),
]


def test_a_claude_stream_becomes_messages_tool_calls_turns_and_its_usage() -> None:
    assert read_all(ClaudeStreamJson(), lines_of("claude-stream.jsonl")) == CLAUDE_EXPECTED


def test_a_codex_stream_becomes_messages_commands_turns_and_usage_per_turn() -> None:
    assert read_all(CodexJson("gpt-5-codex"), lines_of("codex-exec.jsonl")) == CODEX_EXPECTED


def totals(events: list[tuple[str, dict[str, Any]]]) -> tuple[int, int, int]:
    reports = [data for kind, data in events if kind == "usage.reported"]
    return (
        sum(r["input_tokens"] for r in reports),
        sum(r["output_tokens"] for r in reports),
        sum(r["cached_input_tokens"] for r in reports),
    )


def test_the_usage_reported_adds_up_to_the_streams_own_totals() -> None:
    # Claude: the result's session totals (input includes cache writes, cached = reads).
    result = json.loads(lines_of("claude-stream.jsonl")[-1])["usage"]
    claude = read_all(ClaudeStreamJson(), lines_of("claude-stream.jsonl"))
    assert totals(claude) == (
        result["input_tokens"] + result["cache_creation_input_tokens"],
        result["output_tokens"],
        result["cache_read_input_tokens"],
    )
    # Codex: the sum over its turns (its input counts the cached part too).
    turns = [json.loads(x)["usage"] for x in lines_of("codex-exec.jsonl") if "turn.completed" in x]
    codex = read_all(CodexJson("m"), lines_of("codex-exec.jsonl"))
    cached = sum(u["cached_input_tokens"] for u in turns)
    assert totals(codex) == (
        sum(u["input_tokens"] for u in turns) - cached,
        sum(u["output_tokens"] for u in turns),
        cached,
    )


def test_a_claude_stream_cut_before_its_result_reports_its_messages_usage_once_each() -> None:
    cut_short = lines_of("claude-stream.jsonl")[:-2]  # no last message, no result

    events = read_all(ClaudeStreamJson(), cut_short)

    assert events[-2] == ("step.completed", {**TURN, "turn": 2})
    # msg_01A counted once (its two lines repeat its usage), msg_01B once.
    assert events[-1] == (
        "usage.reported",
        {
            "model": "claude-sonnet-4-5-20250929",
            "input_tokens": (12 + 2000) + 30,
            "output_tokens": 40 + 60,
            "cached_input_tokens": 2000,
        },
    )


def test_a_codex_stream_cut_inside_a_turn_closes_it_saying_so() -> None:
    events = read_all(CodexJson("m"), lines_of("codex-exec.jsonl")[:5])

    assert events[-1] == (
        "step.completed",
        {**TURN, "turn": 1, "error": "the agent's output ended inside the turn"},
    )


GARBAGE = [
    "not json at all",
    '{"type": "assistant", "message": {"id": "msg_9", "content": [{"type": "te',  # cut off
    "[1, 2, 3]",
    '{"no": "type"}',
    '{"type": "something_new", "x": 1}',
    '{"type": "assistant", "message": "not an object"}',
    '{"type": "item.completed", "item": {"type": "agent_message"}}',
    '{"type": "turn.completed", "usage": 7}',
]


@pytest.mark.parametrize("make", [ClaudeStreamJson, CodexJson], ids=["claude", "codex"])
@pytest.mark.parametrize("line", GARBAGE)
def test_garbage_and_cut_off_lines_are_kept_as_log_never_dropped(
    make: type[Reader], line: str
) -> None:
    assert make().feed(line) == [("log", {"stream": "stdout", "text": line})]


def test_blank_lines_say_nothing_and_long_texts_are_cut() -> None:
    r = CodexJson("m")
    assert r.feed("   ") == []
    long = "x" * (MAX_TEXT + 5)
    ((kind, data),) = r.feed(
        json.dumps(
            {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": long}}
        )
    )
    assert kind == "agent.message"
    assert data["text"] == "x" * MAX_TEXT + "… [5 more characters]"


def test_partial_messages_become_deltas() -> None:
    line = {
        "type": "stream_event",
        "event": {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hel"},
        },
    }
    assert ClaudeStreamJson().feed(json.dumps(line)) == [
        ("agent.message.delta", {"text": "Hel", "index": 0})
    ]


def test_a_codex_turn_that_fails_closes_with_its_error() -> None:
    r = CodexJson("m")
    r.feed('{"type": "turn.started"}')
    assert r.feed('{"type": "turn.failed", "error": {"message": "rate limited"}}') == [
        ("step.completed", {**TURN, "turn": 1, "error": "rate limited"})
    ]
    assert r.feed('{"type": "error", "message": "stream lost"}') == [
        ("log", {"source": "codex", "level": "error", "message": "stream lost"})
    ]


def test_the_formats_are_named_and_an_unknown_one_is_refused() -> None:
    assert reader("lines", None) is None
    assert isinstance(reader("claude-stream-json", None), ClaudeStreamJson)
    assert isinstance(reader("codex-json", "m"), CodexJson)
    with pytest.raises(ValueError, match="unknown format"):
        reader("yaml", None)


@given(st.lists(st.text(max_size=200), max_size=30))
def test_no_input_makes_a_reader_raise(lines: list[str]) -> None:
    for make in (ClaudeStreamJson, CodexJson):
        events = read_all(make(), lines)
        assert all(isinstance(kind, str) and isinstance(data, dict) for kind, data in events)


@given(
    st.lists(
        st.sampled_from(lines_of("claude-stream.jsonl") + lines_of("codex-exec.jsonl") + GARBAGE),
        max_size=40,
    )
)
def test_any_mix_of_known_lines_and_garbage_reads_without_raising(lines: list[str]) -> None:
    for make in (ClaudeStreamJson, CodexJson):
        for kind, data in read_all(make(), lines):
            json.dumps(data)  # every event is JSON
            assert kind in {
                "log",
                "agent.message",
                "agent.message.delta",
                "tool.call",
                "tool.output",
                "tool.result",
                "step.started",
                "step.completed",
                "usage.reported",
            }


def test_an_event_too_big_to_send_keeps_its_short_fields_and_the_rest_cut() -> None:
    big = (
        "tool.call",
        {"call_id": "toolu_9", "name": "Write", "input": {"content": "y" * MAX_EVENT}},
    )

    kind, data = bounded(big)

    assert kind == "tool.call"
    assert (data["call_id"], data["name"]) == ("toolu_9", "Write")
    assert "input" not in data and len(data["truncated"]) < MAX_TEXT + 40
    assert bounded(("log", {"text": "small"})) == ("log", {"text": "small"})
