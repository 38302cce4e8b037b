"""What the HTTP and UDP tracker services share: a bound address and the
announce URL built from it."""

from __future__ import annotations

from typing import ClassVar

from tracker.core.addr import PeerAddr
from tracker.errors import TrackerError

__all__ = ["AnnounceEndpoint"]


class AnnounceEndpoint:
    """A tracker service that has an address while it runs (set by its
    ``__aenter__``) and serves ``<SCHEME>://<address>/announce``."""

    SCHEME: ClassVar[str]  # "http" or "udp"
    NAME: ClassVar[str]  # for the not-running error
    _address: PeerAddr | None = None

    @property
    def address(self) -> PeerAddr:
        """The bound address (the real port when the configured one was 0).

        Raises:
            TrackerError: if the service is not running.
        """
        if self._address is None:
            raise TrackerError(f"{self.NAME} is not running")
        return self._address

    @property
    def url(self) -> str:
        """The announce URL, e.g. ``http://127.0.0.1:6969/announce``."""
        return f"{self.SCHEME}://{self.address}/announce"
