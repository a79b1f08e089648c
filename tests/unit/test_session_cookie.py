"""The session cookie is `Secure` unless the request came in on a loopback address of the
server (the socket's address, not the Host header a client chooses)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from api.http.sessions import _loopback


def request(server: tuple[str, int] | None, host: str = "example.org") -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/session",
        "headers": [(b"host", host.encode())],
        "server": server,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("server", "loopback"),
    [
        (("127.0.0.1", 8000), True),
        (("127.5.0.1", 8000), True),
        (("::1", 8000), True),
        (("192.0.2.2", 8000), False),
        (("10.0.0.7", 443), False),
        (("fd00::2", 8000), False),
        (("localhost", 8000), False),  # not an address: assume the worst
        (None, False),  # a server that does not say (a unix socket): Secure
    ],
)
def test_secure_is_off_only_on_a_loopback_socket(
    server: tuple[str, int] | None, loopback: bool
) -> None:
    assert _loopback(request(server)) is loopback
    # the Host header never turns Secure off
    assert _loopback(request(server, host="127.0.0.1:8000")) is loopback
