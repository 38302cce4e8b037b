"""An HTTP/1.1 GET for tracker announces and scrapes: request, response parser.

RFC 9112 (HTTP/1.1 message syntax) and RFC 9110 (semantics, redirects),
only as much as a tracker GET needs. :func:`encode_get_request` builds the
request for a parsed :class:`HttpUrl`; :class:`ResponseParser` reads the
response (a stream core: ``receive_data(data) -> list[event]``, ``b""``
when the server closed); :func:`next_location` decides what a response head
means: the body is wanted (200), a redirect is to be followed, or the
announce failed (any other status).

Theory of operation of :class:`ResponseParser`:

* ``HEAD``: bytes are buffered until an empty line ends the head, at most
  :data:`MAX_HEAD_BYTES`. Interim ``1xx`` heads are skipped. The head gives
  the body's framing (RFC 9112 section 6.3): none (``204``, ``304``),
  ``Transfer-Encoding: chunked``, ``Content-Length``, or until the server
  closes (HTTP/1.0 style). :class:`HeadReceived` is emitted.
* ``LENGTH`` / ``UNTIL_CLOSE``: body bytes are collected.
* ``CHUNK_SIZE`` → ``CHUNK_DATA`` → ``CHUNK_END`` → ``CHUNK_SIZE`` ...;
  the zero-size chunk leads to ``TRAILERS``, which are read and dropped.
* ``DONE`` after :class:`BodyReceived`; later bytes are ignored (we asked for
  ``Connection: close``). ``ERROR`` after a :class:`TrackerFailure`: every
  later call raises again.

The body is capped at ``max_body_bytes`` before it is buffered: a
``Content-Length`` or chunk size past the cap fails at once. Deliberately
left out: keep-alive and pipelining (one request per connection), content
codings (we send no ``Accept-Encoding``, so the server sends identity),
transfer codings other than ``chunked``, and obsolete header line folding.
"""

from __future__ import annotations

import base64
import string
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote, unquote, urljoin, urlsplit

from client.errors import TrackerFailure

__all__ = [
    "MAX_HEAD_BYTES",
    "MAX_REDIRECTS",
    "BodyReceived",
    "HeadReceived",
    "HttpUrl",
    "ParserState",
    "ResponseEvent",
    "ResponseParser",
    "encode_get_request",
    "next_location",
]

MAX_HEAD_BYTES = 32 * 1024  # status line and headers (and again trailers), bytes
MAX_CHUNK_LINE_BYTES = 1024  # a chunk-size line with its extensions, bytes
MAX_CHUNK_SIZE_DIGITS = 16  # hex digits of a chunk size (a 64-bit size)
MAX_REDIRECTS = 5  # redirects followed for one request (aiohttp's default is 10)
MAX_SHOWN_BYTES = 64  # how much of a bad line an error message quotes
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})  # RFC 9110 15.4
NO_BODY_STATUSES = frozenset({204, 304})  # RFC 9112 6.3, rule 1
USER_AGENT = b"bitswarm"

# RFC 9110 5.6.2: tchar, the characters of a header name
_TOKEN = frozenset((string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~").encode())
# Printable ASCII but space: kept as is in a request target, so an
# already percent-encoded query (the binary info_hash) is never re-quoted.
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
# RFC 3986 3.2.2: what a reg-name or an IP literal (without brackets) holds
_HOST_CHARS = frozenset(
    (string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:").encode()
)
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _show(data: bytes | bytearray) -> str:
    text = repr(bytes(data[:MAX_SHOWN_BYTES]))
    return text + "..." if len(data) > MAX_SHOWN_BYTES else text


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpUrl:
    """An ``http://`` URL taken apart for one GET: where to connect, the
    ``Host`` header, and the request target (path and query, as given)."""

    url: str
    host: str
    port: int
    host_header: bytes
    target: bytes
    authorization: bytes | None = None

    @classmethod
    def parse(cls, url: str) -> HttpUrl:
        """Split an ``http://`` URL.

        Raises:
            TrackerFailure: not an ``http://`` URL with a host, or a bad port.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TrackerFailure(f"bad URL {url!r:.100}: {exc}") from None
        host = parts.hostname
        if parts.scheme.lower() != "http" or not host:
            raise TrackerFailure(f"not an http:// URL with a host: {url!r:.100}")
        try:
            ascii_host = host.encode("idna")
        except UnicodeError:
            raise TrackerFailure(f"bad host name in {url!r:.100}") from None
        if not ascii_host or not all(c in _HOST_CHARS for c in ascii_host):
            raise TrackerFailure(f"bad host name in {url!r:.100}")
        name = b"[" + ascii_host + b"]" if b":" in ascii_host else ascii_host
        # RFC 9110 7.2: Host is the authority's host and port; we give the
        # port whenever the URL names one.
        host_header = name if port is None else b"%s:%d" % (name, port)
        path = parts.path or "/"
        target = path + ("?" + parts.query if parts.query else "")
        authorization = None
        if parts.username is not None:
            # RFC 7617: credentials in the URL go as Basic auth, as aiohttp did
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = b"Basic " + base64.b64encode(pair.encode())
        return cls(
            url=url,
            host=ascii_host.decode("ascii"),
            port=80 if port is None else port,
            host_header=host_header,
            target=quote(target, safe=_TARGET_SAFE).encode("ascii"),
            authorization=authorization,
        )


def encode_get_request(url: HttpUrl) -> bytes:
    """The bytes of ``GET`` for ``url``, one request per connection."""
    lines = [
        b"GET " + url.target + b" HTTP/1.1",
        b"Host: " + url.host_header,
        b"User-Agent: " + USER_AGENT,
        b"Accept: */*",
        b"Connection: close",
    ]
    if url.authorization is not None:
        lines.append(b"Authorization: " + url.authorization)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadReceived:
    """The final status line and headers (names lower-cased, in order)."""

    http_version: bytes
    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    def get(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), if present."""
        return next((v for n, v in self.headers if n == name), None)

    def describe(self) -> str:
        """``HTTP 404 Not Found``: the status as failure reasons give it."""
        reason = self.reason.decode("ascii", "replace")
        return f"HTTP {self.status} {reason}".rstrip()


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyReceived:
    """The whole body, framing removed; the response is complete."""

    body: bytes


ResponseEvent = HeadReceived | BodyReceived


class ParserState(Enum):
    HEAD = "head"  #: reading the status line and headers
    LENGTH = "length"  #: reading a Content-Length body
    UNTIL_CLOSE = "until close"  #: reading a body that ends when the server closes
    CHUNK_SIZE = "chunk size"  #: reading a chunk-size line
    CHUNK_DATA = "chunk data"  #: reading a chunk's bytes
    CHUNK_END = "chunk end"  #: reading the CRLF after a chunk's bytes
    TRAILERS = "trailers"  #: reading trailer fields after the last chunk
    DONE = "done"  #: the response is complete
    ERROR = "error"  #: the response was malformed; every call raises


class ResponseParser:
    """Parses one HTTP/1.x response to a GET.

    Args:
        max_body_bytes: the largest body accepted, framing removed.
    """

    def __init__(self, max_body_bytes: int) -> None:
        self._max_body = max_body_bytes
        self._state = ParserState.HEAD
        self._buf = bytearray()
        self._pos = 0  # parse offset into _buf
        self._scan = 0  # where to look on for the end of the head
        self._body = bytearray()
        self._remaining = 0  # bytes left of the body (LENGTH) or chunk (CHUNK_DATA)
        self._trailer_bytes = 0
        self._error: TrackerFailure | None = None
        self._head: HeadReceived | None = None

    @property
    def state(self) -> ParserState:
        return self._state

    @property
    def head(self) -> HeadReceived | None:
        """The final head, once received."""
        return self._head

    def receive_data(self, data: bytes) -> list[ResponseEvent]:
        """Feed bytes from the server; ``b""`` means it closed the connection.

        Returns:
            :class:`HeadReceived` once the head is complete, then
            :class:`BodyReceived` once the body is.

        Raises:
            TrackerFailure: the response is malformed, over a cap, or cut
                short; the parser is then in ``ERROR``.
        """
        if self._error is not None:
            raise self._error
        if self._state is ParserState.DONE:
            return []
        try:
            if not data:
                return self._closed()
            self._buf += data
            return self._parse()
        except TrackerFailure as exc:
            self._state = ParserState.ERROR
            self._error = exc
            raise

    # -- states ---------------------------------------------------------------

    def _parse(self) -> list[ResponseEvent]:
        events: list[ResponseEvent] = []
        while True:
            state = self._state
            if state is ParserState.HEAD:
                head = self._read_head()
                if head is None:
                    break
                if 100 <= head.status < 200:
                    continue  # interim (100 Continue, 103 Early Hints): skipped
                self._head = head
                self._frame_body(head)
                events.append(head)
            elif state is ParserState.LENGTH or state is ParserState.CHUNK_DATA:
                if not self._read_counted():
                    break
            elif state is ParserState.UNTIL_CLOSE:
                self._take_body(len(self._buf) - self._pos)
                break
            elif state is ParserState.CHUNK_SIZE:
                if not self._read_chunk_size():
                    break
            elif state is ParserState.CHUNK_END:
                if not self._read_chunk_end():
                    break
            elif state is ParserState.TRAILERS:
                if not self._read_trailers():
                    break
            else:  # DONE
                break
            if self._state is ParserState.DONE:
                events.append(BodyReceived(body=bytes(self._body)))
                break
        self._compact()
        return events

    def _closed(self) -> list[ResponseEvent]:
        state = self._state
        if state is ParserState.UNTIL_CLOSE:
            self._state = ParserState.DONE
            return [BodyReceived(body=bytes(self._body))]
        if state is ParserState.HEAD:
            if len(self._buf) == self._pos:
                raise TrackerFailure("server closed the connection without answering")
            raise TrackerFailure("server closed the connection within the head")
        if state is ParserState.LENGTH:
            have = len(self._body)
            raise TrackerFailure(
                f"server closed the connection after {have} of "
                f"{have + self._remaining} body bytes"
            )
        if state is ParserState.TRAILERS:
            # the body is whole; only the trailers' blank line is missing
            self._state = ParserState.DONE
            return [BodyReceived(body=bytes(self._body))]
        raise TrackerFailure(
            f"server closed the connection within the chunked body ({state.value})"
        )

    def _read_head(self) -> HeadReceived | None:
        end, after = self._find_blank_line()
        if end < 0:
            if len(self._buf) - self._pos > MAX_HEAD_BYTES:
                raise TrackerFailure(
                    f"response head exceeds the {MAX_HEAD_BYTES}-byte cap"
                )
            return None
        if end - self._pos > MAX_HEAD_BYTES:
            raise TrackerFailure(f"response head exceeds the {MAX_HEAD_BYTES}-byte cap")
        lines = bytes(self._buf[self._pos : end]).split(b"\n")
        self._pos = self._scan = after
        return _parse_head(lines)

    def _frame_body(self, head: HeadReceived) -> None:
        """RFC 9112 6.3: how the body ends."""
        if head.status in NO_BODY_STATUSES:
            self._state = ParserState.DONE
            return
        codings = [
            c.strip().lower()
            for n, v in head.headers
            if n == b"transfer-encoding"
            for c in v.split(b",")
            if c.strip()
        ]
        if codings:
            if any(c != b"chunked" for c in codings) or len(codings) > 1:
                raise TrackerFailure(
                    f"unsupported Transfer-Encoding {_show(b', '.join(codings))}"
                )
            self._state = ParserState.CHUNK_SIZE
            return
        lengths = {
            part.strip()
            for n, v in head.headers
            if n == b"content-length"
            for part in v.split(b",")
        }
        if not lengths:
            self._state = ParserState.UNTIL_CLOSE
            return
        value = lengths.pop()
        if lengths or not value.isdigit() or not value.isascii() or len(value) > 18:
            raise TrackerFailure(
                f"bad Content-Length {_show(head.get(b'content-length') or b'')}"
            )
        length = int(value)
        if length > self._max_body:
            raise TrackerFailure(
                f"response of {length} bytes exceeds the {self._max_body}-byte cap"
            )
        self._remaining = length
        self._state = ParserState.LENGTH if length else ParserState.DONE

    def _read_counted(self) -> bool:
        """Body bytes of a Content-Length body or of one chunk."""
        n = min(self._remaining, len(self._buf) - self._pos)
        self._take_body(n)
        self._remaining -= n
        if self._remaining:
            return False
        if self._state is ParserState.LENGTH:
            self._state = ParserState.DONE
        else:
            self._state = ParserState.CHUNK_END
        return True

    def _take_body(self, n: int) -> None:
        if len(self._body) + n > self._max_body:
            raise TrackerFailure(f"response exceeds the {self._max_body}-byte cap")
        self._body += memoryview(self._buf)[self._pos : self._pos + n]
        self._pos += n

    def _read_chunk_size(self) -> bool:
        line = self._read_line(MAX_CHUNK_LINE_BYTES, "chunk-size line")
        if line is None:
            return False
        size_text = line.split(b";", 1)[0].strip(b" \t")
        if (
            not size_text
            or len(size_text) > MAX_CHUNK_SIZE_DIGITS
            or not all(c in _HEX for c in size_text)
        ):
            raise TrackerFailure(f"bad chunk-size line {_show(line)}")
        size = int(size_text, 16)
        if len(self._body) + size > self._max_body:
            raise TrackerFailure(f"response exceeds the {self._max_body}-byte cap")
        if size == 0:
            self._state = ParserState.TRAILERS
        else:
            self._remaining = size
            self._state = ParserState.CHUNK_DATA
        return True

    def _read_chunk_end(self) -> bool:
        ahead = self._buf[self._pos : self._pos + 2]
        if ahead == b"\r\n" or ahead[:1] == b"\n":
            self._pos += len(ahead) if ahead == b"\r\n" else 1
            self._state = ParserState.CHUNK_SIZE
            return True
        if bytes(ahead) in (b"", b"\r"):
            return False
        tail = self._buf[self._pos : self._pos + MAX_SHOWN_BYTES + 1]
        raise TrackerFailure(f"chunk data runs past its size: {_show(tail)}")

    def _read_trailers(self) -> bool:
        start = self._pos
        line = self._read_line(MAX_HEAD_BYTES, "trailer line")
        if line is None:
            return False
        self._trailer_bytes += self._pos - start
        if self._trailer_bytes > MAX_HEAD_BYTES:
            raise TrackerFailure(f"trailers exceed the {MAX_HEAD_BYTES}-byte cap")
        if not line:
            self._state = ParserState.DONE
        elif b":" not in line:
            raise TrackerFailure(f"bad trailer line {_show(line)}")
        return True

    # -- buffer ---------------------------------------------------------------

    def _read_line(self, cap: int, what: str) -> bytes | None:
        """The next line without its CRLF (or bare LF), if complete."""
        end = self._buf.find(b"\n", self._pos, self._pos + cap + 2)
        if end < 0:
            if len(self._buf) - self._pos > cap + 1:
                raise TrackerFailure(f"{what} exceeds the {cap}-byte cap")
            return None
        line = bytes(self._buf[self._pos : end])
        self._pos = end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def _find_blank_line(self) -> tuple[int, int]:
        """Where the head ends (at its last line's LF) and the body starts,
        or ``(-1, -1)``; a bare LF ends a line too (RFC 9112 2.2)."""
        buf = self._buf
        crlf = buf.find(b"\n\r\n", self._scan)
        lf = buf.find(b"\n\n", self._scan, None if crlf < 0 else crlf + 1)
        if lf >= 0:
            return lf, lf + 2
        if crlf >= 0:
            return crlf, crlf + 3
        self._scan = max(self._pos, len(buf) - 2)  # rescan only the new bytes
        return -1, -1

    def _compact(self) -> None:
        if self._pos > 4096 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._scan = max(0, self._scan - self._pos)
            self._pos = 0


def _parse_head(lines: list[bytes]) -> HeadReceived:
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    status_line = lines[0]
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise TrackerFailure(f"not an HTTP/1.x response: {_show(status_line)}")
    if len(code) != 3 or not code.isdigit() or not code.isascii():
        raise TrackerFailure(f"bad status line {_show(status_line)}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not all(c in _TOKEN for c in name):
            raise TrackerFailure(f"bad header line {_show(line)}")
        headers.append((name.lower(), value.strip(b" \t")))
    return HeadReceived(
        http_version=version,
        status=int(code),
        reason=reason.strip(),
        headers=tuple(headers),
    )


def next_location(head: HeadReceived, url: str) -> str | None:
    """What a response to a GET of ``url`` means.

    Returns:
        None for ``200 OK`` (the body is the answer), or the absolute URL a
        redirect (301, 302, 303, 307, 308 with a ``Location``) points to.

    Raises:
        TrackerFailure: any other status (``HTTP 404 Not Found``), or a
            redirect without a usable ``Location``.
    """
    if head.status == 200:
        return None
    location = head.get(b"location")
    if head.status not in REDIRECT_STATUSES or location is None:
        raise TrackerFailure(head.describe())
    # a Location is a URI-reference (RFC 9110 10.2.2); raw bytes beyond
    # ASCII are percent-encoded, existing %XX escapes are kept
    text = quote(location, safe=_TARGET_SAFE)
    try:
        target = urljoin(url, text)
        scheme = urlsplit(target).scheme.lower()
    except ValueError:
        raise TrackerFailure(
            f"{head.describe()} to a bad URL {_show(location)}"
        ) from None
    if scheme not in ("http", "https"):
        raise TrackerFailure(f"{head.describe()} to a non-HTTP URL {_show(location)}")
    return target
