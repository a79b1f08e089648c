"""Integer parameters are plain ASCII digits: no sign, space, underscore or other script."""

from __future__ import annotations

import base64

import pytest

from tests.support import ALICE, Server

LOOSE = ["+5", " 5", "5 ", "1_0", "\u0665", "\uff15", "-0", "0x5", "5.0", ""]


@pytest.mark.parametrize("value", LOOSE)
def test_a_query_integer_in_any_form_but_plain_digits_is_refused(
    shared_server: Server, value: str
) -> None:
    with shared_server.client(ALICE) as alice:
        answer = alice.get("/api/events", params={"limit": value})
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == "limit"


def test_a_long_run_of_digits_is_out_of_range_not_an_error(shared_server: Server) -> None:
    with shared_server.client(ALICE) as alice:
        answer = alice.get("/api/events", params={"after": "9" * 40})
    assert answer.status_code == 400, answer.text
    assert "at least" in answer.json()["detail"]


def test_plain_digits_with_leading_zeros_are_accepted(shared_server: Server) -> None:
    with shared_server.client(ALICE) as alice:
        answer = alice.get("/api/events", params={"limit": "007"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("value", ["+5", "1_0", "\u0665"])
def test_a_min_position_header_in_any_form_but_plain_digits_is_refused(
    shared_server: Server, value: str
) -> None:
    with shared_server.client(ALICE) as alice:
        answer = alice.get("/api/runs", headers={"X-Min-Position": value.encode()})
    assert answer.status_code == 400, answer.text


def test_a_cursor_with_stray_characters_is_refused(shared_server: Server) -> None:
    cursor = base64.urlsafe_b64encode(b"p5").decode().rstrip("=")
    with shared_server.client(ALICE) as alice:
        assert alice.get("/api/runs", params={"cursor": cursor}).status_code == 200
        answer = alice.get("/api/runs", params={"cursor": cursor[:2] + "." + cursor[2:] + "="})
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == "cursor"
