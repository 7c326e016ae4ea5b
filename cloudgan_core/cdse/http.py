"""HTTP plumbing shared by the CDSE search and download code: retries, back-off, host checks.

Nothing here logs or raises a header, a request body or a query string (the token and the
password travel in those); messages carry the URL path only.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from cloudgan_core.cdse.errors import CdseRequestError

_module_log = logging.getLogger("cloudgan_core.cdse")

#: HTTP statuses worth retrying after a pause.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

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

    Returns the first response with any other status (the caller checks it).

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
            resp = session.get(url, params=params, timeout=timeout)
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
