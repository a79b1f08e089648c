"""The reference runner's pure parts: reading SSE frames, checking an agent's gate request,
the text a turn reads on stdin, and how the session's news keeps what the server said."""

from __future__ import annotations

import json

import pytest

from adapters.runner_gates import gate_request
from adapters.runner_news import News
from adapters.runner_stream import Frame, frames
from adapters.runner_workspace import task_text


def lines(text: str) -> list[bytes]:
    return [line.encode() for line in text.splitlines(keepends=True)]


def test_sse_frames_keep_id_event_and_data_and_skip_pings() -> None:
    stream = (
        ": ping\n\n"
        'id: 7\nevent: gate.resolved\ndata: {"a": 1}\n\n'
        "id: 8\r\nevent: x\r\ndata: one\r\ndata: two\r\n\r\n"
        "event: done\ndata: {}\n\n"
    )
    assert list(frames(lines(stream))) == [
        Frame("7", "gate.resolved", '{"a": 1}'),
        Frame("8", "x", "one\ntwo"),
        Frame(None, "done", "{}"),
    ]


def test_an_sse_frame_cut_off_before_its_blank_line_is_not_delivered() -> None:
    assert list(frames(lines("id: 9\nevent: run.cancelled\ndata: {}\n"))) == []


def request(**gate: object) -> bytes:
    return json.dumps({"gate": gate}).encode()


def test_a_gate_request_without_kind_or_id_is_a_question_with_a_made_up_id() -> None:
    gate = gate_request(request(prompt="Which database?"), set())
    assert gate["kind"] == "question" and gate["prompt"] == "Which database?"
    assert len(gate["gate_id"]) == 36
    assert set(gate) == {"gate_id", "kind", "prompt"}


def test_a_gate_request_keeps_the_fields_the_server_knows_and_drops_the_rest() -> None:
    sha = "ab" * 32
    gate = gate_request(
        request(
            kind="shell_approval", prompt="p", tool="bash", command_sha256=sha, x=1, gate_id="g"
        ),
        set(),
    )
    assert gate == {
        "gate_id": "g",
        "kind": "shell_approval",
        "prompt": "p",
        "tool": "bash",
        "command_sha256": sha,
    }


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"{not json", "JSON"),
        (b"[1]", '{"gate"'),
        (b'{"gate": "yes"}', '{"gate"'),
        (request(kind="coffee"), "kind"),
        (request(prompt=3), "prompt"),
        (request(tool=""), "tool"),
        (request(tool="t" * 201), "tool"),
        (request(command_sha256="rm -rf /"), "command_sha256"),
        (request(command_sha256="AB" * 32), "command_sha256"),
        (request(gate_id=""), "gate_id"),
        (request(gate_id="g" * 201), "gate_id"),
        (request(gate_id="used"), "used already"),
    ],
)
def test_a_gate_request_the_server_would_refuse_is_refused_here(line: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        gate_request(line, {"used"})


def test_a_turn_reads_the_task_then_each_directive_so_far() -> None:
    assert task_text("fix it", []) == "fix it"
    directives = [
        {"directive_id": "d1", "kind": "redirect", "instruction": "not that way"},
        {"directive_id": "d2", "kind": "amend", "instruction": "add a test"},
    ]
    assert (
        task_text("fix it", directives) == "fix it\n\nRedirect: not that way\n\nAmend: add a test"
    )


def directive(directive_id: str, kind: str = "amend") -> dict[str, object]:
    return {"directive_id": directive_id, "kind": kind, "instruction": f"do {directive_id}"}


def test_news_keeps_each_directive_once_in_order_from_claim_stream_and_heartbeat() -> None:
    news = News("lease-1", [directive("d1")])
    news.heard("steering.directive", {"data": {**directive("d2", "redirect"), "targets": []}})
    news.heartbeat({"gates": [], "directives": [directive("d1"), directive("d3")]})
    news.heard("steering.directive", {"data": directive("s", "stop")})  # a cancel, not for us
    assert news.redirect_waiting()
    assert [d["directive_id"] for d in news.take_directives()] == ["d1", "d2", "d3"]
    news.heartbeat({"directives": [directive("d2")]})  # listed until applied: not again
    assert news.take_directives() == [] and not news.directives_waiting()


def test_news_gives_a_gate_its_first_resolution_from_stream_or_heartbeat() -> None:
    news = News()
    news.heartbeat(
        {"gates": [{"gate_id": "q", "decision": "answer", "answer": "A", "scope": "once"}]}
    )
    news.heard("gate.resolved", {"data": {"gate_id": "q", "decision": "answer", "answer": "B"}})
    found = news.wait_for_resolution("q", lambda: False)
    assert found == {"gate_id": "q", "decision": "answer", "answer": "A", "scope": "once"}
    assert news.wait_for_resolution("other", lambda: True) is None


@pytest.mark.parametrize("kind", ["run.cancelled", "lease.expired", "run.claimed"])
def test_news_ends_the_lease_on_the_events_that_take_it_away(kind: str) -> None:
    news = News("lease-1")
    news.heard("tool.output", {"data": {"text": "hi"}})
    news.heard("run.claimed", {"data": {"lease_id": "lease-1"}})  # its own claim
    assert not news.ended.is_set()
    news.heard(kind, {"data": {"lease_id": "lease-2"}})
    news.end("a later reason")
    assert news.ended.is_set() and news.why != "a later reason"
    assert news.wait_for_resolution("q", lambda: False) is None
