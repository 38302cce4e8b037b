"""The tracker GET's response parser and request (client/core/http_response.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.http_response import (
    MAX_HEAD_BYTES,
    BodyReceived,
    HeadReceived,
    HttpUrl,
    ParserState,
    ResponseEvent,
    ResponseParser,
    encode_get_request,
    next_location,
)
from client.errors import TrackerFailure

CAP = 1000  # body cap in these tests, bytes


def feed(data: bytes, *, byte_by_byte: bool, close: bool = True) -> list[ResponseEvent]:
    parser = ResponseParser(CAP)
    pieces = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
    events: list[ResponseEvent] = []
    for piece in pieces:
        events += parser.receive_data(piece)
    if close:
        events += parser.receive_data(b"")
    return events


def parse_both(data: bytes, *, close: bool = True) -> tuple[HeadReceived, bytes]:
    """Parse whole and byte by byte; the events must match."""
    whole = feed(data, byte_by_byte=False, close=close)
    split = feed(data, byte_by_byte=True, close=close)
    assert whole == split
    assert len(whole) == 2
    head, body = whole
    assert isinstance(head, HeadReceived)
    assert isinstance(body, BodyReceived)
    return head, body.body


def fails_both(data: bytes, fragment: str, *, close: bool = True) -> None:
    for byte_by_byte in (False, True):
        with pytest.raises(TrackerFailure, match=fragment):
            feed(data, byte_by_byte=byte_by_byte, close=close)


# -- good responses -----------------------------------------------------------

GOOD = [
    # (name, raw response, close at the end, status, body)
    (
        "content-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello",
        False,
        200,
        b"hello",
    ),
    (
        "content-length then junk after",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi extra bytes",
        False,
        200,
        b"hi",
    ),
    (
        "chunked with extensions and trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;name=value;x\r\nhello\r\n1 ; y="z"\r\n!\r\nA\r\n0123456789\r\n'
        b"0;last\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n",
        False,
        200,
        b"hello!0123456789",
    ),
    (
        "chunked upper-case hex and CHUNKED",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n"
        b"0000B\r\nhello world\r\n0\r\n\r\n",
        False,
        200,
        b"hello world",
    ),
    (
        "HTTP/1.0 close-delimited",
        b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nd8:intervali60ee",
        True,
        200,
        b"d8:intervali60ee",
    ),
    (
        "bare LF line ends",
        b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
        False,
        200,
        b"abc",
    ),
    (
        "no reason phrase",
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        False,
        200,
        b"",
    ),
    (
        "interim 100 Continue skipped",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        False,
        200,
        b"x",
    ),
    (
        "204 has no body",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
        False,
        204,
        b"",
    ),
    (
        "non-200 with a body",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
        False,
        404,
        b"not found",
    ),
    (
        "repeated equal content-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
        False,
        200,
        b"ok",
    ),
    (
        "chunked closed before the trailers' blank line",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",
        True,
        200,
        b"ok",
    ),
    (
        "body exactly at the cap",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * CAP,
        False,
        200,
        b"x" * CAP,
    ),
]


@pytest.mark.parametrize(
    ("raw", "close", "status", "body"),
    [row[1:] for row in GOOD],
    ids=[row[0] for row in GOOD],
)
def test_good_responses_parse_whole_and_byte_by_byte(
    raw: bytes, close: bool, status: int, body: bytes
) -> None:
    head, got = parse_both(raw, close=close)
    assert head.status == status
    assert got == body


def test_head_fields() -> None:
    head, _ = parse_both(
        b"HTTP/1.0 301 Moved Permanently\r\nLocation: /x\r\n"
        b"Set-Cookie: a\r\nSET-COOKIE:  b \r\nContent-Length: 0\r\n\r\n"
    )
    assert head.http_version == b"HTTP/1.0"
    assert head.reason == b"Moved Permanently"
    assert head.headers == (
        (b"location", b"/x"),
        (b"set-cookie", b"a"),
        (b"set-cookie", b"b"),
        (b"content-length", b"0"),
    )
    assert head.get(b"set-cookie") == b"a"
    assert head.get(b"missing") is None
    assert head.describe() == "HTTP 301 Moved Permanently"


def test_head_is_emitted_before_the_body_arrives() -> None:
    parser = ResponseParser(CAP)
    events = parser.receive_data(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 50\r\n\r\n"
    )
    assert [type(e) for e in events] == [HeadReceived]
    assert parser.state is ParserState.LENGTH
    assert parser.head is not None
    assert parser.head.describe() == "HTTP 404 Not Found"


def test_done_ignores_later_bytes_and_close() -> None:
    parser = ResponseParser(CAP)
    parser.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
    assert parser.state is ParserState.DONE
    assert parser.receive_data(b"HTTP/1.1 200 OK\r\n\r\n") == []
    assert parser.receive_data(b"") == []


# -- bad responses ------------------------------------------------------------

BAD = [
    # (name, raw response, close at the end, message fragment)
    ("empty", b"", True, "closed the connection without answering"),
    ("cut in the head", b"HTTP/1.1 200 OK\r\nContent-", True, "within the head"),
    ("HTTP/0.9 body", b"d8:intervali60ee\r\n\r\n", True, "not an HTTP/1.x response"),
    ("HTTP/2", b"HTTP/2 200\r\n\r\n", False, "not an HTTP/1.x response"),
    ("bad status", b"HTTP/1.1 2OO OK\r\n\r\n", False, "bad status line"),
    ("long status", b"HTTP/1.1 2000 OK\r\n\r\n", False, "bad status line"),
    (
        "bad header",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        False,
        "bad header line",
    ),
    (
        "obs-fold",
        b"HTTP/1.1 200 OK\r\nX: a\r\n  folded\r\n\r\n",
        False,
        "bad header line",
    ),
    (
        "space in header name",
        b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx",
        False,
        "bad header line",
    ),
    (
        "content-length too long",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n",
        False,
        "response of 1001 bytes exceeds the 1000-byte cap",
    ),
    (
        "content-length not a number",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        False,
        "bad Content-Length",
    ),
    (
        "content-length huge",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        False,
        "bad Content-Length",
    ),
    (
        "conflicting content-lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        False,
        "bad Content-Length",
    ),
    (
        "cut in a content-length body",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        True,
        "after 3 of 10 body bytes",
    ),
    (
        "close-delimited over the cap",
        b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * (CAP + 1),
        False,
        "response exceeds the 1000-byte cap",
    ),
    (
        "chunk size not hex",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        False,
        "bad chunk-size line b'zz'",
    ),
    (
        "chunk size empty",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;ext\r\n",
        False,
        "bad chunk-size line",
    ),
    (
        "chunk size negative",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
        False,
        "bad chunk-size line",
    ),
    (
        "chunk size 0x prefix",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
        False,
        "bad chunk-size line",
    ),
    (
        "chunk size too many digits",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 17 + b"1\r\n",
        False,
        "bad chunk-size line",
    ),
    (
        "chunk over the cap",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n",
        False,
        "response exceeds the 1000-byte cap",
    ),
    (
        "chunks adding up over the cap",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"1f4\r\n"
        + b"x" * 500
        + b"\r\n1f5\r\n",
        False,
        "response exceeds the 1000-byte cap",
    ),
    (
        "chunk longer than its size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        False,
        "chunk data runs past its size",
    ),
    (
        "chunk-size line without end",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * 2000,
        False,
        "chunk-size line exceeds the 1024-byte cap",
    ),
    (
        "cut mid-chunk",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        True,
        r"within the chunked body \(chunk data\)",
    ),
    (
        "bad trailer",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnope\r\n\r\n",
        False,
        "bad trailer line",
    ),
    (
        "gzip transfer coding",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        False,
        "unsupported Transfer-Encoding",
    ),
    (
        "head over the cap, unterminated",
        b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * MAX_HEAD_BYTES,
        False,
        f"response head exceeds the {MAX_HEAD_BYTES}-byte cap",
    ),
    (
        "head over the cap, terminated",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (MAX_HEAD_BYTES // 6 + 1) + b"\r\n",
        False,
        f"response head exceeds the {MAX_HEAD_BYTES}-byte cap",
    ),
    (
        "trailers over the cap",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        + b"X: y\r\n" * (MAX_HEAD_BYTES // 6 + 1)
        + b"\r\n",
        False,
        f"trailers exceed the {MAX_HEAD_BYTES}-byte cap",
    ),
]


@pytest.mark.parametrize(
    ("raw", "close", "fragment"),
    [row[1:] for row in BAD],
    ids=[row[0] for row in BAD],
)
def test_bad_responses_fail_whole_and_byte_by_byte(
    raw: bytes, close: bool, fragment: str
) -> None:
    fails_both(raw, fragment, close=close)


def test_error_state_is_sticky() -> None:
    parser = ResponseParser(CAP)
    with pytest.raises(TrackerFailure, match="bad status line"):
        parser.receive_data(b"HTTP/1.1 XYZ\r\n\r\n")
    assert parser.state is ParserState.ERROR
    with pytest.raises(TrackerFailure, match="bad status line"):
        parser.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")
    with pytest.raises(TrackerFailure, match="bad status line"):
        parser.receive_data(b"")


def test_content_length_over_the_cap_fails_before_the_body() -> None:
    parser = ResponseParser(CAP)
    with pytest.raises(TrackerFailure) as info:
        parser.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    assert info.value.reason == (
        "response of 1000000000 bytes exceeds the 1000-byte cap"
    )


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_any_input_returns_or_raises_tracker_failure(data: bytes, step: int) -> None:
    parser = ResponseParser(CAP)
    try:
        for i in range(0, len(data), step):
            parser.receive_data(data[i : i + step])
        parser.receive_data(b"")
    except TrackerFailure:
        assert parser.state is ParserState.ERROR


@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    st.integers(min_value=1, max_value=30),
)
def test_chunked_round_trip(chunks: list[bytes], step: int) -> None:
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"
    parser = ResponseParser(CAP)
    events: list[ResponseEvent] = []
    for i in range(0, len(raw), step):
        events += parser.receive_data(raw[i : i + step])
    assert events[-1] == BodyReceived(body=b"".join(chunks))


# -- the request and the URL ----------------------------------------------------


def test_request_keeps_the_percent_encoded_query_and_names_the_port() -> None:
    url = HttpUrl.parse(
        "http://127.0.0.1:6969/announce?info_hash=%00%FF%25%20x&peer_id=-BS-#frag"
    )
    assert (url.host, url.port) == ("127.0.0.1", 6969)
    assert encode_get_request(url) == (
        b"GET /announce?info_hash=%00%FF%25%20x&peer_id=-BS- HTTP/1.1\r\n"
        b"Host: 127.0.0.1:6969\r\n"
        b"User-Agent: bitswarm\r\n"
        b"Accept: */*\r\n"
        b"Connection: close\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("url", "host", "port", "host_header", "target"),
    [
        ("http://127.0.0.1/announce", "127.0.0.1", 80, b"127.0.0.1", b"/announce"),
        (
            "HTTP://Tracker.Example:80",
            "tracker.example",
            80,
            b"tracker.example:80",
            b"/",
        ),
        ("http://[::1]:6969/a?b", "::1", 6969, b"[::1]:6969", b"/a?b"),
        (
            "http://127.0.0.1:1/a b?c\x01",
            "127.0.0.1",
            1,
            b"127.0.0.1:1",
            b"/a%20b?c%01",
        ),
        ("http://127.0.0.1:1/\u00e9", "127.0.0.1", 1, b"127.0.0.1:1", b"/%C3%A9"),
    ],
)
def test_url_parts(
    url: str, host: str, port: int, host_header: bytes, target: bytes
) -> None:
    parsed = HttpUrl.parse(url)
    assert (parsed.host, parsed.port, parsed.host_header, parsed.target) == (
        host,
        port,
        host_header,
        target,
    )
    assert parsed.authorization is None


def test_url_credentials_become_basic_auth() -> None:
    url = HttpUrl.parse("http://user:p%40ss@127.0.0.1:1/announce")
    assert url.authorization == b"Basic dXNlcjpwQHNz"  # user:p@ss
    assert url.host_header == b"127.0.0.1:1"
    assert b"Authorization: Basic dXNlcjpwQHNz\r\n" in encode_get_request(url)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://127.0.0.1/announce", "not an http:// URL"),
        ("udp://127.0.0.1:1", "not an http:// URL"),
        ("http:///announce", "not an http:// URL"),
        ("http://127.0.0.1:99999/announce", "bad URL"),
        ("http://a..b/announce", "bad host name"),
        ("http://a\x00b/announce", "bad host name"),
        ("http://a\x7fb:1/announce", "bad host name"),
    ],
)
def test_bad_urls(url: str, fragment: str) -> None:
    with pytest.raises(TrackerFailure, match=fragment):
        HttpUrl.parse(url)


# -- what a head means --------------------------------------------------------


def head(status: int, reason: bytes = b"", **headers: bytes) -> HeadReceived:
    return HeadReceived(
        http_version=b"HTTP/1.1",
        status=status,
        reason=reason,
        headers=tuple((k.encode(), v) for k, v in headers.items()),
    )


BASE = "http://127.0.0.1:1/a/announce?info_hash=%00"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_resolve_against_the_url(status: int) -> None:
    assert next_location(head(status, location=b"/b/announce?x=%FF"), BASE) == (
        "http://127.0.0.1:1/b/announce?x=%FF"
    )


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (b"https://127.0.0.2/announce?q", "https://127.0.0.2/announce?q"),
        (b"http://127.0.0.3:7/x", "http://127.0.0.3:7/x"),
        (b"other?y", "http://127.0.0.1:1/a/other?y"),
        (b"/caf\xc3\xa9 x", "http://127.0.0.1:1/caf%C3%A9%20x"),
    ],
)
def test_redirect_locations(location: bytes, expected: str) -> None:
    assert next_location(head(302, location=location), BASE) == expected


def test_200_means_the_body() -> None:
    assert next_location(head(200, b"OK"), BASE) is None


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (head(404, b"Not Found"), "HTTP 404 Not Found"),
        (head(500), "HTTP 500"),
        (head(302, b"Found"), "HTTP 302 Found"),  # no Location
        (head(300, b"Multiple Choices", location=b"/x"), "HTTP 300 Multiple Choices"),
        (head(206, b"Partial Content"), "HTTP 206 Partial Content"),
    ],
)
def test_other_statuses_fail_with_the_status(
    response: HeadReceived, reason: str
) -> None:
    with pytest.raises(TrackerFailure) as info:
        next_location(response, BASE)
    assert info.value.reason == reason


def test_redirect_to_another_scheme_fails() -> None:
    with pytest.raises(
        TrackerFailure, match=re.escape("to a non-HTTP URL b'udp://127.0.0.1:1'")
    ):
        next_location(head(301, b"Moved", location=b"udp://127.0.0.1:1"), BASE)
