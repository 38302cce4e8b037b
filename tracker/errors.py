"""The tracker package's exception hierarchy."""

from __future__ import annotations

__all__ = ["AnnounceRequestError", "HttpRequestError", "TrackerError"]


class TrackerError(Exception):
    """Root of every error the tracker package raises on purpose."""


class AnnounceRequestError(TrackerError):
    """An announce or scrape request is malformed; ``reason`` is sent back as
    the bencoded ``failure reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HttpRequestError(TrackerError):
    """An HTTP request head the tracker will not serve; ``status`` is the
    status code to answer with (the connection is closed afterwards)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
