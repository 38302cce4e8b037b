"""The tracker's sans-I/O request-head parser (tracker/core/http_request)."""

from __future__ import annotations

import pytest

from tracker.core.http_request import RequestHead, parse_request_head
from tracker.errors import HttpRequestError


@pytest.mark.parametrize(
    ("head", "want"),
    [
        (
            b"GET /announce?a=1 HTTP/1.1\r\nHost: x",
            RequestHead(
                method=b"GET", path=b"/announce", query=b"a=1", keep_alive=True
            ),
        ),
        (
            b"\r\nHEAD / HTTP/1.0",
            RequestHead(method=b"HEAD", path=b"/", query=b"", keep_alive=False),
        ),
        (
            b"GET /scrape HTTP/1.0\r\nConnection: Keep-Alive",
            RequestHead(method=b"GET", path=b"/scrape", query=b"", keep_alive=True),
        ),
        (
            b"GET http://127.0.0.1:6969/announce?x HTTP/1.1\r\nConnection: close",
            RequestHead(method=b"GET", path=b"/announce", query=b"x", keep_alive=False),
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 0",
            RequestHead(method=b"GET", path=b"/", query=b"", keep_alive=True),
        ),
    ],
)
def test_request_heads_served(head: bytes, want: RequestHead) -> None:
    assert parse_request_head(head) == want


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /announce", 400),
        (b"GET  / HTTP/1.1", 400),
        (b"GET / HTTQ/1.1", 400),
        (b"GET / HTTP/2.0", 505),
        (b"POST /announce HTTP/1.1", 405),
        (b"GET / HTTP/1.1\r\nContent-Length: 5", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked", 400),
    ],
)
def test_request_heads_refused_with_status(head: bytes, status: int) -> None:
    with pytest.raises(HttpRequestError) as err:
        parse_request_head(head)
    assert err.value.status == status
