"""Turning a failed yt-dlp call into a reason code, and deciding whether to try again.

The exception chain is read first (``DownloadError.exc_info``, ``ExtractorError.cause``,
``__cause__``/``__context__``; HTTP status from yt-dlp, urllib or requests errors; yt-dlp
network exception types), the message text only as a fallback: yt-dlp reports some
failures, e.g. a connection cut mid-download or YouTube's "Private video", as text only.
"""

from __future__ import annotations

import http.client
import re
import socket
from dataclasses import dataclass

from yt_dlp.networking import exceptions as net
from yt_dlp.utils import ContentTooShortError, GeoRestrictedError, UnsupportedError

REASONS = (
    "http_404", "http_410", "http_403", "http_429", "http_5xx", "private", "unavailable",
    "geo_blocked", "sign_in", "connection", "timeout", "unsupported_url", "no_formats", "other",
)
# Worth another try: the server or network may recover; YouTube's 403s usually come from an
# expired media URL that a fresh extraction replaces; unknown errors get the benefit of doubt.
TRANSIENT = frozenset({"http_429", "http_5xx", "http_403", "connection", "timeout", "other"})
PERMANENT = frozenset(REASONS) - TRANSIENT

MAX_MESSAGE = 300


@dataclass(frozen=True)
class Failure:
    """Why one attempt failed: a machine reason code, whether to retry, a short message."""

    reason: str
    message: str
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps, breadth first, each once."""
    seen: set[int] = set()
    queue: list[object] = [exc]
    chain: list[BaseException] = []
    while queue:
        item = queue.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        chain.append(item)
        exc_info = getattr(item, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            queue.append(exc_info[1])
        for attr in ("cause", "__cause__", "__context__", "reason"):
            queue.append(getattr(item, attr, None))
    return chain


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a yt-dlp, urllib or requests HTTP error, else None."""
    candidates = [getattr(exc, "status", None), getattr(exc, "code", None)]
    response = getattr(exc, "response", None)
    if response is not None:
        candidates += [getattr(response, "status", None), getattr(response, "status_code", None)]
    is_http_error = isinstance(exc, net.HTTPError) or type(exc).__name__ == "HTTPError"
    for value in candidates:
        if is_http_error and isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def reason_for_status(status: int) -> str:
    if status in (404, 410, 403, 429):
        return f"http_{status}"
    if 500 <= status < 600:
        return "http_5xx"
    if status == 401:
        return "sign_in"
    return "other"


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: fall back to our own backoff


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout)) or "timeout" in type(exc).__name__.lower()


def _is_connection(exc: BaseException) -> bool:
    return isinstance(
        exc,
        (ConnectionError, http.client.IncompleteRead, http.client.RemoteDisconnected,
         net.TransportError, ContentTooShortError),
    )


# Checked in order; the first match wins (so "private" beats "sign in", and geo, no_formats
# beat the generic "is not available").
_TEXT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.I))
    for reason, pattern in (
        ("private", r"private video|video is private"),
        ("geo_blocked", r"available in your country|geo.?restrict|blocked it in your country|from your location"),
        ("no_formats", r"requested format is not available|no video formats"),
        ("unsupported_url", r"unsupported url|no suitable extractor"),
        ("sign_in", r"\bsign in\b|\blog ?in\b|age.?restrict|inappropriate for some users|members.only|join this channel|requires authentication"),
        ("unavailable", r"copyright|video unavailable|is not available|has been removed|no longer available|"
                        r"account .* terminated|does not exist|no such file"),
        ("timeout", r"timed? ?out"),
        ("connection", r"connection (reset|refused|aborted)|remote end closed|bytes read|incomplete ?read|"
                       r"broken pipe|network is unreachable|name resolution|content too short|"
                       r"downloaded \d+ bytes, expected"),
    )
)
_HTTP_TEXT = re.compile(r"HTTP Error (\d{3})")


def short_message(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc) or type(exc).__name__)
    text = re.sub(r"\s+", " ", text.replace("\r", " ")).strip()
    text = re.sub(r"^ERROR:\s*", "", text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` for an exception raised by one download attempt."""
    chain = exception_chain(exc)
    message = short_message(exc)
    for item in chain:
        status = http_status(item)
        if status is not None:
            return Failure(reason_for_status(status), message, _retry_after(item))
    for item in chain:
        if isinstance(item, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
            return Failure("unavailable", message)  # a file:// source that is not there
        if isinstance(item, GeoRestrictedError):
            return Failure("geo_blocked", message)
        if isinstance(item, UnsupportedError):
            return Failure("unsupported_url", message)
    if any(_is_timeout(item) for item in chain):
        return Failure("timeout", message)
    if any(_is_connection(item) for item in chain):
        return Failure("connection", message)
    text = " | ".join(str(item) for item in chain)
    match = _HTTP_TEXT.search(text)
    if match:
        return Failure(reason_for_status(int(match.group(1))), message)
    for reason, pattern in _TEXT_RULES:
        if pattern.search(text):
            return Failure(reason, message)
    return Failure("other", message)
