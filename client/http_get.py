"""A plain ``http://`` GET for tracker announces and scrapes: the asyncio driver.

Why not aiohttp: each bitswarm process imported it (~0.12 CPU-s, its
connector builds SSL contexts at import) only to send a handful of tracker
GETs, about 8% of a benchmark swarm's CPU (issue 7). So plain ``http://``
goes through :class:`~client.core.http_response.ResponseParser` over one
``asyncio`` stream per request (``Connection: close``), and ``https://`` (a
tracker's own URL, or a redirect target) goes to the caller's
``https_get``, which uses aiohttp: TLS is not worth re-doing.

The caller bounds the whole exchange, redirects included, with its own
``asyncio.timeout``. Only the host a URL names is contacted, and no proxy
is taken from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

from client.core.http_response import (
    MAX_REDIRECTS,
    BodyReceived,
    HeadReceived,
    HttpUrl,
    ResponseParser,
    encode_get_request,
    next_location,
)
from client.errors import TrackerFailure

__all__ = ["HttpsGet", "http_get", "is_https_url"]

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024  # bytes asked of the socket per read
CLOSE_TIMEOUT_S = 1.0  # waiting for our side of the close, seconds

#: fetches an ``https://`` URL, returning the body of a 200 answer
HttpsGet = Callable[[str], Awaitable[bytes]]


def is_https_url(url: str) -> bool:
    """Whether ``url`` is ``https://`` (by its scheme)."""
    return url[:8].lower() == "https://"


async def http_get(
    url: str,
    *,
    max_body_bytes: int,
    https_get: HttpsGet,
    max_redirects: int = MAX_REDIRECTS,
) -> bytes:
    """GET ``url`` and return the body of its ``200`` answer.

    Follows up to ``max_redirects`` redirects to ``http://`` URLs; an
    ``https://`` URL (at the start or as a redirect target) is handed to
    ``https_get``.

    Raises:
        TrackerFailure: the URL is unusable, the connection failed, the
            answer is malformed or over ``max_body_bytes``, its status is
            not 200 (``HTTP 404 Not Found``), or redirects went on too long.
    """
    for _ in range(max_redirects + 1):
        if is_https_url(url):
            return await https_get(url)
        target = HttpUrl.parse(url)
        head, body = await _exchange(target, max_body_bytes)
        location = next_location(head, url)
        if location is None:
            return body
        log.debug("GET %.200s: %s to %.200s", url, head.describe(), location)
        url = location
    raise TrackerFailure(f"more than {max_redirects} redirects, the last to {url}")


async def _exchange(url: HttpUrl, max_body_bytes: int) -> tuple[HeadReceived, bytes]:
    """One request on its own connection: the head, and the body if the
    status is 200 (a redirect's or an error's body is not read)."""
    try:
        reader, writer = await asyncio.open_connection(url.host, url.port)
    except OSError as exc:
        raise TrackerFailure(
            f"cannot connect to {url.host}:{url.port}: {_describe(exc)}"
        ) from None
    try:
        writer.write(encode_get_request(url))
        await writer.drain()
        parser = ResponseParser(max_body_bytes)
        while True:
            data = await reader.read(READ_CHUNK_BYTES)
            for event in parser.receive_data(data):
                if isinstance(event, BodyReceived):
                    assert parser.head is not None  # a body follows its head
                    return parser.head, event.body
                if event.status != 200:
                    return event, b""
            if not data:  # the parser raises or completes at EOF; never loop
                raise TrackerFailure("server closed the connection")
    except OSError as exc:
        raise TrackerFailure(
            f"connection to {url.host}:{url.port} failed: {_describe(exc)}"
        ) from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await writer.wait_closed()


def _describe(exc: OSError) -> str:
    """``ConnectionRefusedError: Connection refused``; asyncio's own text
    repeats the address, and a resolver error has a negative errno."""
    if exc.errno is not None and exc.errno > 0:
        text = os.strerror(exc.errno)
    else:
        text = exc.strerror or str(exc)
    return f"{type(exc).__name__}: {text}"
