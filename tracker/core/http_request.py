"""The tracker's HTTP/1.1 request heads, sans I/O (issue 7).

:func:`parse_request_head` turns one request head (request line and
header fields, without the blank line that ends it) into what the server
acts on, or refuses it with the status code to answer. The asyncio side
(:mod:`tracker.http`) frames heads, routes paths and writes replies.

What is served: ``GET`` and ``HEAD`` requests without a body, HTTP/1.0 and
1.1, keep-alive by the version's default or a ``Connection`` field, the
origin form of the target and the absolute form (RFC 9112 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracker.errors import HttpRequestError

__all__ = ["RequestHead", "parse_request_head"]

_VERSIONS = {b"HTTP/1.1": True, b"HTTP/1.0": False}  # keep-alive by default


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHead:
    method: bytes  #: b"GET" or b"HEAD"
    path: bytes
    query: bytes  #: still percent-encoded
    keep_alive: bool


def parse_request_head(head: bytes) -> RequestHead:
    """Parse one request head.

    Raises:
        HttpRequestError: 400 (malformed, or a body), 405 (a method other
            than GET and HEAD), 505 (an HTTP version other than 1.0 and 1.1).
    """
    head = head.lstrip(b"\r\n")  # RFC 9112: ignore empty lines before a request
    line_end = head.find(b"\r\n")
    line = head if line_end < 0 else head[:line_end]
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpRequestError(400, "malformed request line")
    method, target, version = parts
    keep_alive = _VERSIONS.get(version)
    if keep_alive is None:
        if version.startswith(b"HTTP/"):
            raise HttpRequestError(505, "HTTP version not supported")
        raise HttpRequestError(400, "malformed request line")
    if line_end >= 0:
        fields = head[line_end:].lower()
        if b"\r\ntransfer-encoding:" in fields or (
            b"\r\ncontent-length:" in fields
            and _field(fields, b"content-length") != b"0"
        ):
            raise HttpRequestError(400, "a GET has no body")  # we read none
        if b"\r\nconnection:" in fields:
            tokens = {t.strip() for t in _field(fields, b"connection").split(b",")}
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
    if method != b"GET" and method != b"HEAD":
        raise HttpRequestError(405, "only GET and HEAD")
    if target.startswith(b"http://") or target.startswith(b"https://"):
        slash = target.find(b"/", target.find(b"//") + 2)  # absolute form
        target = target[slash:] if slash >= 0 else b"/"
    path, _, query = target.partition(b"?")
    return RequestHead(method=method, path=path, query=query, keep_alive=keep_alive)


def _field(fields: bytes, name: bytes) -> bytes:
    """The value of header ``name`` in lower-cased ``fields`` (which start
    with CRLF); the first one if repeated."""
    start = fields.find(b"\r\n" + name + b":") + len(name) + 3
    end = fields.find(b"\r\n", start)
    return (fields[start:] if end < 0 else fields[start:end]).strip()
