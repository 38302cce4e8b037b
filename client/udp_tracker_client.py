"""Announce and scrape over UDP (BEP 15): the asyncio driver.

Each call opens one connected UDP socket to the tracker, runs a
:class:`UdpTrackerTransaction` (connect step, retransmissions) until it is
answered, fails, or ``timeout_s`` runs out, and closes the socket.
Connection ids are kept in a :class:`ConnectionCache` the caller passes
(one per :class:`TrackerClient`), so announces within a minute skip the
connect step. Every failure is a :class:`TrackerFailure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from dataclasses import dataclass
from typing import Any

from client.core.announce import AnnounceEvent, AnnounceResponse, ScrapeStats
from client.core.udp_tracker import (
    DEFAULT_MAX_RETRANSMITS,
    DEFAULT_RETRANSMIT_BASE_S,
    AnnounceDone,
    ConnectionCache,
    ScrapeDone,
    SendPacket,
    UdpAnnounceParams,
    UdpScrapeParams,
    UdpTrackerTransaction,
    parse_udp_tracker_url,
)
from client.errors import TrackerFailure

__all__ = ["ConnectionCache", "UdpTrackerConfig", "udp_announce", "udp_scrape"]

log = logging.getLogger(__name__)

RECEIVE_QUEUE_SIZE = 16  # datagrams buffered for one transaction; extras dropped
DEFAULT_UDP_TIMEOUT_S = 60.0  # whole budget of one announce or scrape, seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpTrackerConfig:
    """Timing of one UDP tracker request.

    ``retransmit_base_s`` is BEP 15's 15 s (resends after 15, 30, 60 ...
    seconds); ``timeout_s`` bounds the whole request, connect step included,
    so a dead tracker costs at most that long before the next one is tried.
    """

    retransmit_base_s: float = DEFAULT_RETRANSMIT_BASE_S
    max_retransmits: int = DEFAULT_MAX_RETRANSMITS
    timeout_s: float = DEFAULT_UDP_TIMEOUT_S


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        # bounded: one transaction expects one answer per send
        self.received: asyncio.Queue[bytes | OSError] = asyncio.Queue(
            maxsize=RECEIVE_QUEUE_SIZE
        )

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.received.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: nobody listens there
        if isinstance(exc, OSError):
            with contextlib.suppress(asyncio.QueueFull):
                self.received.put_nowait(exc)


async def udp_announce(
    url: str,
    info_hash: bytes,
    peer_id: bytes,
    port: int,
    uploaded: int,
    downloaded: int,
    left: int,
    event: AnnounceEvent,
    numwant: int,
    key: int,
    *,
    config: UdpTrackerConfig = UdpTrackerConfig(),
    cache: ConnectionCache | None = None,
    rng: random.Random | None = None,
) -> AnnounceResponse:
    """Announce to a ``udp://host:port`` tracker (BEP 15).

    Args:
        url: the tracker's ``udp://`` URL.
        info_hash: the torrent's 20-byte infohash.
        peer_id: our 20-byte peer id.
        port: the TCP port we accept peers on.
        uploaded: bytes uploaded so far.
        downloaded: bytes downloaded so far.
        left: bytes still missing.
        event: the BEP 3 event.
        numwant: peers wanted; negative asks for the tracker's default.
        key: our 32-bit BEP 7 key.
        config: retransmission base, retry cap and overall timeout.
        cache: connection ids per tracker, reused for up to a minute.
        rng: makes transaction ids; ``random.SystemRandom()`` by default.

    Raises:
        TrackerFailure: on the tracker's error message, a malformed answer,
            an unreachable tracker, or no answer within ``config.timeout_s``.
    """
    params = UdpAnnounceParams(
        info_hash=info_hash,
        peer_id=peer_id,
        downloaded=downloaded,
        left=left,
        uploaded=uploaded,
        event=event,
        key=key,
        num_want=max(numwant, -1),
        port=port,
    )
    done = await _exchange(url, params, config, cache, rng)
    if not isinstance(done, AnnounceDone):  # _exchange answers in kind
        raise TrackerFailure("UDP tracker answered an announce as a scrape", url=url)
    return done.response


async def udp_scrape(
    url: str,
    info_hashes: list[bytes] | tuple[bytes, ...],
    *,
    config: UdpTrackerConfig = UdpTrackerConfig(),
    cache: ConnectionCache | None = None,
    rng: random.Random | None = None,
) -> dict[bytes, ScrapeStats]:
    """Scrape up to 74 torrents from a ``udp://`` tracker (BEP 15).

    Raises:
        TrackerFailure: as :func:`udp_announce` does.
    """
    done = await _exchange(
        url, UdpScrapeParams(info_hashes=tuple(info_hashes)), config, cache, rng
    )
    if not isinstance(done, ScrapeDone):  # _exchange answers in kind
        raise TrackerFailure("UDP tracker answered a scrape as an announce", url=url)
    return done.stats


async def _exchange(
    url: str,
    request: UdpAnnounceParams | UdpScrapeParams,
    config: UdpTrackerConfig,
    cache: ConnectionCache | None,
    rng: random.Random | None,
) -> AnnounceDone | ScrapeDone:
    host, port = parse_udp_tracker_url(url)
    tracker = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.timeout_s
    try:
        async with asyncio.timeout_at(deadline):  # name resolution included
            transport, protocol = await loop.create_datagram_endpoint(
                _Protocol, remote_addr=(host, port)
            )
    except TimeoutError:
        raise TrackerFailure(
            f"no answer within {config.timeout_s:g} s", url=url
        ) from None
    except OSError as exc:
        raise TrackerFailure(f"{type(exc).__name__}: {exc}", url=url) from None
    sock = transport.get_extra_info("socket")
    transaction = UdpTrackerTransaction(
        request,
        rng=rng or random.SystemRandom(),
        connection=cache.get(tracker, loop.time()) if cache is not None else None,
        ipv6=sock is not None and sock.family == socket.AF_INET6,
        retransmit_base_s=config.retransmit_base_s,
        max_retransmits=config.max_retransmits,
    )
    try:
        done = await _run(transaction, transport, protocol, deadline, config, url)
    except TrackerFailure as exc:
        if cache is not None:
            cache.forget(tracker)
        raise TrackerFailure(exc.reason, url=url) from None
    finally:
        transport.close()
    if cache is not None and transaction.connection is not None:
        cache.put(tracker, transaction.connection)
    return done


async def _run(
    transaction: UdpTrackerTransaction,
    transport: asyncio.DatagramTransport,
    protocol: _Protocol,
    deadline: float,
    config: UdpTrackerConfig,
    url: str,
) -> AnnounceDone | ScrapeDone:
    """Feed the transaction datagrams and ticks until it is answered."""
    loop = asyncio.get_running_loop()
    outputs = transaction.start(loop.time())
    while True:
        for output in outputs:
            if isinstance(output, SendPacket):
                log.debug("udp tracker %s: sending %d bytes", url, len(output.payload))
                transport.sendto(output.payload)
            else:
                return output
        try:
            async with asyncio.timeout_at(min(transaction.next_deadline(), deadline)):
                item = await protocol.received.get()
        except TimeoutError:
            now = loop.time()
            if now >= deadline:
                raise TrackerFailure(
                    f"no answer within {config.timeout_s:g} s "
                    f"({transaction.sends} packets sent)"
                ) from None
            outputs = transaction.tick(now)
            continue
        if isinstance(item, OSError):
            raise TrackerFailure(f"{type(item).__name__}: {item}")
        outputs = transaction.handle_datagram(item, loop.time())
