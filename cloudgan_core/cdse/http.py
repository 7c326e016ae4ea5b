"""HTTP plumbing shared by the CDSE search and download code: retries, back-off, host checks,
bounded reads.

Nothing here logs or raises a header, a request body or a query string (the token and the
password travel in those); messages carry the URL path only, and a quoted reply body only after
:func:`~cloudgan_core.cdse.redact.redact`.

Every body is read through :func:`receive`, which stops at a size limit and enforces
:class:`TransferLimits` (like curl's ``--speed-limit``/``--speed-time`` and ``--max-time``):
requests' read timeout alone restarts with every byte, so a server sending one byte a second
would otherwise never time out.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3

from cloudgan_core.cdse.errors import CdseConfigError, CdseLimitError, CdseRequestError
from cloudgan_core.cdse.redact import redact

_module_log = logging.getLogger("cloudgan_core.cdse")

#: HTTP statuses worth retrying after a pause.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: Default lowest transfer rate in bytes/s, averaged over each ``stall_seconds`` period.
DEFAULT_MIN_RATE = 10_000
#: Default length in seconds of the periods the rate is measured over.
DEFAULT_STALL_SECONDS = 60.0
#: Default longest time in seconds one request may take, from sending it to its last byte.
DEFAULT_REQUEST_DEADLINE = 3600.0
#: Most bytes of an error reply that are read (and, redacted, at most 200 characters quoted).
ERROR_BODY_BYTES = 4096
_PIECE = 1 << 20

# Second-level labels under which names are registered (``example.co.uk``): a short list, not
# the public-suffix list; it only makes the same-site check stricter for such hosts.
_SECOND_LEVEL = frozenset({"ac", "co", "com", "edu", "gov", "net", "org", "ne", "or", "go"})


class Log(Protocol):
    """What the client needs from a logger (``logging.Logger`` and Dagster's ``context.log``)."""

    def info(self, msg: str, *args: Any) -> Any: ...

    def warning(self, msg: str, *args: Any) -> Any: ...

    def debug(self, msg: str, *args: Any) -> Any: ...


def get_log(log: Log | None) -> Log:
    """``log`` or the ``cloudgan_core.cdse`` module logger."""
    return log if log is not None else _module_log


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying a request.

    Attributes
    ----------
    retries
        Retries after the first try (so ``retries + 1`` attempts in all).
    backoff
        First pause in seconds when the server gives no ``Retry-After``; doubles each retry.
    max_wait
        Longest pause in seconds, also the cap applied to a server's ``Retry-After``.
    """

    retries: int = 4
    backoff: float = 1.0
    max_wait: float = 60.0

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_wait)
        return min(self.backoff * (2**attempt), self.max_wait)


@dataclass(frozen=True)
class TransferLimits:
    """How slow and how long one HTTP transfer may be.

    Attributes
    ----------
    min_rate
        Bytes per second that must arrive, averaged over each period of ``stall_seconds``
        (0 turns the rate rule off).
    stall_seconds
        Length in seconds of the periods the rate is measured over. A read that waits
        ``stall_seconds / 2`` without any byte also ends the transfer, so a stalled transfer
        fails within ``1.5 * stall_seconds`` (90 s with the defaults).
    request_deadline
        Longest time in seconds for one request, from sending it to its last byte.
    """

    min_rate: float = DEFAULT_MIN_RATE
    stall_seconds: float = DEFAULT_STALL_SECONDS
    request_deadline: float = DEFAULT_REQUEST_DEADLINE

    def __post_init__(self) -> None:
        if not self.min_rate >= 0:
            raise CdseConfigError(f"min_rate must be >= 0 bytes/s, got {self.min_rate}")
        for name in ("stall_seconds", "request_deadline"):
            if not getattr(self, name) > 0:
                raise CdseConfigError(f"{name} must be > 0 seconds, got {getattr(self, name)}")

    def read_timeout(self, read: float) -> float:
        """The socket read timeout to use instead of ``read`` seconds: at most ``stall_seconds / 2``."""
        return min(read, self.stall_seconds / 2)

    def timeout(self, timeout: float | tuple[float, float]) -> tuple[float, float]:
        """``(connect, read)`` seconds for a request, the read timeout shortened by :meth:`read_timeout`."""
        connect, read = (timeout, timeout) if isinstance(timeout, (int, float)) else timeout
        return connect, self.read_timeout(read)

    def watch(self, what: str, *, idle: float | None = None, started: float | None = None,
              clock: Callable[[], float] = time.monotonic) -> TransferWatch:
        """A :class:`TransferWatch` for one request.

        Parameters
        ----------
        what
            Names the transfer in errors (a file, an endpoint path).
        idle
            The socket read timeout in seconds the request uses (for the message when it fires).
        started
            When the request was sent (``clock`` seconds); now when None.
        clock
            Monotonic clock in seconds.
        """
        return TransferWatch(self, what, self.stall_seconds / 2 if idle is None else idle,
                             clock() if started is None else started, clock)


class TransferWatch:
    """Counts the bytes of one transfer and raises :class:`CdseLimitError` when it is too slow or too late."""

    def __init__(self, limits: TransferLimits, what: str, idle: float, started: float,
                 clock: Callable[[], float]) -> None:
        self.limits, self.what, self.idle = limits, what, idle
        self.count = 0
        self._started = started
        self._clock = clock
        self._window_start, self._window_count = clock(), 0

    def update(self, received: int) -> None:
        """Add ``received`` bytes that just arrived and check the deadline and the rate."""
        self.count += received
        now = self._clock()
        lim = self.limits
        if now - self._started > lim.request_deadline:
            raise CdseLimitError(f"{self.what}: not finished within the request deadline of "
                                 f"{lim.request_deadline:g} s ({self.count} bytes received)")
        elapsed = now - self._window_start
        if elapsed >= lim.stall_seconds:
            got = self.count - self._window_count
            if got < lim.min_rate * elapsed:
                raise CdseLimitError(f"{self.what}: fewer than {lim.min_rate:g} bytes/s over {lim.stall_seconds:g} s "
                                     f"({got} bytes in {elapsed:.1f} s); the server stalled")
            self._window_start, self._window_count = now, self.count


def receive(resp: requests.Response, sink: Callable[[bytes], None], watch: TransferWatch, *, max_bytes: int,
            expected: int | None = None, truncate: bool = False) -> int:
    """Read the body of a streamed response into ``sink`` as it arrives; returns its size in bytes.

    Parameters
    ----------
    resp
        A response from a request made with ``stream=True``.
    sink
        Called with each piece (bytes are never kept here).
    watch
        Enforces the rate and the deadline.
    max_bytes
        Most bytes accepted (after ``Content-Encoding`` is undone).
    expected
        The size the body should have, for the message when ``max_bytes`` is passed.
    truncate
        Stop quietly at ``max_bytes`` instead of raising.

    Raises
    ------
    CdseLimitError
        More than ``max_bytes``, too slow, past the deadline, or no data within the read timeout.
    urllib3.exceptions.HTTPError
        The connection broke (the caller may retry).
    """
    while True:
        try:
            piece = resp.raw.read1(_PIECE, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            raise CdseLimitError(f"{watch.what}: no data for {watch.idle:g} s after {watch.count} bytes; "
                                 "the server stalled") from None
        if not piece:
            return watch.count
        if watch.count + len(piece) > max_bytes:
            if truncate:
                sink(piece[: max_bytes - watch.count])
                watch.count = max_bytes
                return watch.count
            raise CdseLimitError(f"{watch.what}: the server sent more than {max_bytes} bytes"
                                 f"{f' (expected {expected})' if expected is not None else ''}; stopped reading")
        sink(piece)
        watch.update(len(piece))


def read_body(resp: requests.Response, watch: TransferWatch, *, max_bytes: int) -> bytes:
    """The whole body of a streamed response, at most ``max_bytes`` (see :func:`receive`)."""
    pieces: list[bytes] = []
    receive(resp, pieces.append, watch, max_bytes=max_bytes)
    return b"".join(pieces)


def error_excerpt(resp: requests.Response, watch: TransferWatch, secrets: Iterable[str | None] = (),
                  limit: int = 200) -> str:
    """At most ``limit`` characters of an error reply, redacted, on one line ("" when unreadable).

    Only the first :data:`ERROR_BODY_BYTES` bytes are read, and when the reply is longer its last,
    possibly cut word is dropped; the secrets are removed before the text is shortened, so no part
    of one survives.
    """
    pieces: list[bytes] = []
    try:
        size = receive(resp, pieces.append, watch, max_bytes=ERROR_BODY_BYTES, truncate=True)
    except (CdseLimitError, urllib3.exceptions.HTTPError, requests.RequestException):
        return ""
    text = b"".join(pieces).decode("utf-8", "replace")
    if size >= ERROR_BODY_BYTES:
        text = text.rsplit(None, 1)[0] if len(text.split(None, 1)) > 1 else ""
    return " ".join(redact(text, secrets).split())[:limit]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(when.timestamp() - now, 0.0)


def url_path(url: str) -> str:
    """``host/path`` of ``url`` without query or fragment (safe to put in messages)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def _site(host: str) -> str:
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) <= 2:
        return host
    keep = 3 if labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2 else 2
    return ".".join(labels[-keep:])


def same_site(trusted_url: str, url: str) -> bool:
    """Whether ``url`` may receive the credentials meant for ``trusted_url``.

    True when both hosts share a registrable domain (``download.dataspace.copernicus.eu`` and
    ``zipper.dataspace.copernicus.eu``), or are the same IP address / single-label name on any
    port (``127.0.0.1:8001`` and ``127.0.0.1:8002``). ``localhost`` and ``127.0.0.1`` are
    different hosts. Never true for a downgrade from https to http.
    """
    a, b = urlsplit(trusted_url), urlsplit(url)
    if not a.hostname or not b.hostname:
        return False
    if a.scheme == "https" and b.scheme != "https":
        return False
    return _site(a.hostname) == _site(b.hostname)


def get_with_retries(
    session: requests.Session,
    url: str,
    *,
    params: dict[str, str] | None = None,
    timeout: float | tuple[float, float],
    policy: RetryPolicy,
    what: str,
    log: Log | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> requests.Response:
    """GET ``url``, retrying network errors, 429 and 5xx (honouring ``Retry-After``).

    Returns the first response with any other status, unread (``stream=True``): the caller
    checks it, reads it with :func:`read_body` and closes it.

    Raises
    ------
    CdseRequestError
        After ``policy.retries`` retries, naming ``what`` and the URL path.
    """
    log = get_log(log)
    problem = ""
    for attempt in range(policy.retries + 1):
        retry_after = None
        try:
            resp = session.get(url, params=params, timeout=timeout, stream=True)
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"{type(exc).__name__}"
        else:
            if resp.status_code not in RETRY_STATUSES:
                return resp
            problem = f"HTTP {resp.status_code}"
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            resp.close()
        if attempt < policy.retries:
            pause = policy.wait(attempt, retry_after)
            log.warning(f"CDSE {what}: {problem} from {url_path(url)}; retrying in {pause:.1f} s")
            sleep(pause)
    raise CdseRequestError(
        f"CDSE {what} failed: {problem} from {url_path(url)} after {policy.retries + 1} attempts"
    )
