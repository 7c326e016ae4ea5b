"""CDSE access tokens: log in with the password grant, refresh before expiry, never leak them.

Access tokens live about 10 minutes and refresh tokens about an hour. :class:`TokenManager`
hands out a valid access token, refreshing it shortly before it expires and logging in again
only when the refresh fails. It is thread-safe (download workers share one).

Credential requests never follow a redirect (the form holds the password and the TOTP code), and
their replies are read up to :data:`MAX_TOKEN_REPLY_BYTES`. :meth:`TokenManager.secrets` lists
what :func:`~cloudgan_core.cdse.redact.redact` must remove from any error text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import threading
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import requests
import urllib3

from cloudgan_core.cdse.config import CLIENT_ID, CdseCredentials, CdseEndpoints
from cloudgan_core.cdse.errors import CdseAuthError, CdseLimitError
from cloudgan_core.cdse.http import REDIRECT_STATUSES, Log, TransferLimits, get_log, read_body, url_path
from cloudgan_core.cdse.redact import redact

_CODE = re.compile(r"^\d{6,8}$")
#: Largest token-endpoint reply read, in bytes (a real one is about 3 kB).
MAX_TOKEN_REPLY_BYTES = 1 << 20
#: How many issued tokens and sent TOTP codes are remembered for redaction.
_REMEMBERED = 16


def totp_code(secret_b32: str, at: float | None = None, *, digits: int = 6, step: int = 30) -> str:
    """RFC 6238 time-based one-time code (HMAC-SHA1) for a base32 secret.

    Parameters
    ----------
    secret_b32
        The base32 secret shown when 2FA was set up (spaces and case ignored).
    at
        Unix time in seconds; now when None.
    digits, step
        Code length and time step in seconds (CDSE uses 6 and 30).
    """
    key_text = secret_b32.replace(" ", "").upper()
    key_text += "=" * (-len(key_text) % 8)
    try:
        key = base64.b32decode(key_text)
    except ValueError:  # binascii.Error is a ValueError
        raise CdseAuthError("CDSE_TOTP is neither a 6-8 digit code nor a base32 TOTP secret") from None
    counter = int((time.time() if at is None else at) // step)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def _totp_value(totp: str) -> str:
    totp = totp.strip()
    return totp if _CODE.match(totp) else totp_code(totp)


@dataclass
class _Token:
    access: str
    access_expires: float
    refresh: str | None
    refresh_expires: float


class TokenManager:
    """Keeps a valid CDSE access token.

    Parameters
    ----------
    endpoints
        Where the token endpoint is.
    credentials
        The account.
    session
        ``requests.Session`` for the token endpoint; a new one when None.
    timeout
        Seconds for each token request (connect and read).
    refresh_margin
        Refresh this many seconds before the access token expires (at most half its lifetime).
    log
        Logger (``logging.Logger`` or Dagster's ``context.log``); never receives a secret.
    clock
        Monotonic clock in seconds (tests may pass a fake one).

    limits
        Rate and deadline for reading each token reply.

    Attributes
    ----------
    logins, refreshes
        How many password logins and refreshes succeeded (for logs and tests).
    """

    def __init__(
        self,
        endpoints: CdseEndpoints,
        credentials: CdseCredentials,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        *,
        refresh_margin: float = 60.0,
        log: Log | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: TransferLimits = TransferLimits(),
    ) -> None:
        self._endpoints = endpoints
        self._credentials = credentials
        self._session = session if session is not None else requests.Session()
        self._timeout = timeout
        self._margin = refresh_margin
        self._log = get_log(log)
        self._clock = clock
        self._lock = threading.RLock()  # secrets() may be called while a request holds it
        self._token: _Token | None = None
        self._limits = limits
        self._used: deque[str] = deque(maxlen=_REMEMBERED)  # tokens issued, TOTP codes sent
        self.logins = 0
        self.refreshes = 0

    def __repr__(self) -> str:
        state = "no token" if self._token is None else "token held"
        return f"TokenManager(token_url={url_path(self._endpoints.token_url)!r}, {state})"

    __str__ = __repr__

    # -- public ---------------------------------------------------------------------------
    def access_token(self) -> str:
        """A valid access token: the cached one, a refreshed one, or one from a new login.

        Raises
        ------
        CdseAuthError
            When CDSE rejects the credentials or the token endpoint cannot be used.
        """
        with self._lock:
            now = self._clock()
            tok = self._token
            if tok is not None and now < tok.access_expires:
                return tok.access
            if tok is not None and tok.refresh and now < tok.refresh_expires:
                try:
                    self._token = self._request("refresh_token", {"refresh_token": tok.refresh})
                    self.refreshes += 1
                    return self._token.access
                except CdseAuthError as exc:
                    self._log.info(f"CDSE token refresh failed ({exc}); logging in again")
            self._token = None
            data = {"username": self._credentials.username, "password": self._credentials.password}
            if self._credentials.totp:
                data["totp"] = _totp_value(self._credentials.totp)
            self._token = self._request("password", data)
            self.logins += 1
            return self._token.access

    def invalidate(self, token: str | None = None) -> None:
        """Forget the access token (after a 401), keeping the refresh token.

        With ``token`` given, only forget it if it is still the current one (another thread
        may already have replaced it).
        """
        with self._lock:
            if self._token is not None and (token is None or token == self._token.access):
                self._token.access_expires = float("-inf")

    def secrets(self) -> list[str]:
        """Every value that must never appear in an error or a log line: the username, password and
        TOTP value, the current TOTP code, and the tokens and codes used lately."""
        creds = self._credentials
        with self._lock:
            out = [creds.username, creds.password, *self._used]
        if creds.totp:
            out.append(creds.totp)
            if not _CODE.match(creds.totp.strip()):
                try:
                    out.append(totp_code(creds.totp))
                except CdseAuthError:
                    pass
        return out

    # -- internals ------------------------------------------------------------------------
    def _request(self, grant: str, data: dict[str, str]) -> _Token:
        where = url_path(self._endpoints.token_url)
        form = {"grant_type": grant, "client_id": CLIENT_ID, **data}
        if "totp" in form:
            self._used.append(form["totp"])
        sent_at = self._clock()
        try:
            resp = self._session.post(self._endpoints.token_url, data=form, timeout=self._timeout,
                                      allow_redirects=False, stream=True)
            with resp:
                status = resp.status_code
                if status in REDIRECT_STATUSES:
                    raise CdseAuthError(
                        f"CDSE token endpoint {where} answered HTTP {status}, a redirect; credentials are never "
                        "sent to another address: set CDSE_TOKEN_URL to the token endpoint itself")
                raw = read_body(resp, self._limits.watch(f"CDSE token endpoint {where}", idle=self._timeout),
                                max_bytes=MAX_TOKEN_REPLY_BYTES)
        except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
            raise CdseAuthError(f"CDSE token endpoint {where} unreachable ({type(exc).__name__})") from None
        except CdseLimitError as exc:
            raise CdseAuthError(redact(str(exc), self.secrets())) from None
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = redact(str(body.get("error", "")), self.secrets())[:60]
        if grant == "password" and status == 401:
            totp = " and TOTP code" if self._credentials.totp else ""
            raise CdseAuthError(
                f"CDSE rejected the username/password{totp} (HTTP 401 from {where}"
                f"{', ' + error if error else ''}); check CDSE_USERNAME and CDSE_PASSWORD"
            )
        if status != 200:
            kind = "login" if grant == "password" else "token refresh"
            raise CdseAuthError(
                f"CDSE {kind} failed: HTTP {status} from {where}{' (' + error + ')' if error else ''}"
            )
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise CdseAuthError(f"CDSE token endpoint {where} answered without an access_token")
        lifetime = _seconds(body.get("expires_in"), 300.0)
        refresh = body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None
        self._used.extend(t for t in (access, refresh) if t)
        refresh_life = _seconds(body.get("refresh_expires_in"), 0.0 if refresh is None else 1800.0)
        return _Token(
            access=access,
            access_expires=sent_at + lifetime - min(self._margin, lifetime / 2),
            refresh=refresh,
            refresh_expires=sent_at + refresh_life - min(self._margin, refresh_life / 2),
        )


def _seconds(value: object, default: float) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return out if out > 0 else default
