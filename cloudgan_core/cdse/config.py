"""Where CDSE lives (endpoint URLs) and who logs in (credentials), read from the environment.

Environment variables
---------------------
``CDSE_USERNAME``, ``CDSE_PASSWORD``
    The Copernicus Data Space account (required to download; searching needs no account).
``CDSE_TOTP``
    Optional second factor: either the current 6-8 digit code or the base32 TOTP secret (then a
    fresh code is computed at every login).
``CDSE_TOKEN_URL``, ``CDSE_CATALOGUE_URL``, ``CDSE_DOWNLOAD_URL``
    Optional endpoint overrides (mirrors, tests). The two OData URLs are the ``.../odata/v1`` base.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cloudgan_core.cdse.errors import CdseConfigError

DEFAULT_TOKEN_URL = (
    "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
)
DEFAULT_CATALOGUE_URL = "https://catalogue.dataspace.copernicus.eu/odata/v1"
DEFAULT_DOWNLOAD_URL = "https://download.dataspace.copernicus.eu/odata/v1"

#: OAuth client id of CDSE's public client (password grant).
CLIENT_ID = "cdse-public"
#: Concurrent connections one CDSE account may open for downloads.
MAX_CONNECTIONS = 4

ENV_USERNAME = "CDSE_USERNAME"
ENV_PASSWORD = "CDSE_PASSWORD"
ENV_TOTP = "CDSE_TOTP"
ENV_TOKEN_URL = "CDSE_TOKEN_URL"
ENV_CATALOGUE_URL = "CDSE_CATALOGUE_URL"
ENV_DOWNLOAD_URL = "CDSE_DOWNLOAD_URL"


def _check_url(name: str, url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CdseConfigError(f"{name} must be an http(s) URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise CdseConfigError(f"{name} must not contain a user name or password")
    return url


@dataclass(frozen=True)
class CdseEndpoints:
    """The three CDSE base URLs.

    Attributes
    ----------
    token_url
        OpenID Connect token endpoint (password and refresh grants).
    catalogue_url
        OData catalogue base, ending in ``/odata/v1`` (``/Products`` is appended).
    download_url
        OData download base, ending in ``/odata/v1`` (``/Products(<Id>)/...`` is appended).
        The bearer token is sent only to this host and hosts sharing its registrable domain.
    """

    token_url: str = DEFAULT_TOKEN_URL
    catalogue_url: str = DEFAULT_CATALOGUE_URL
    download_url: str = DEFAULT_DOWNLOAD_URL

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_url", _check_url("token_url", self.token_url))
        object.__setattr__(self, "catalogue_url", _check_url("catalogue_url", self.catalogue_url))
        object.__setattr__(self, "download_url", _check_url("download_url", self.download_url))

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        token_url: str | None = None,
        catalogue_url: str | None = None,
        download_url: str | None = None,
    ) -> CdseEndpoints:
        """Endpoints from explicit overrides, else the environment, else the public CDSE.

        Parameters
        ----------
        env
            Mapping to read ``CDSE_TOKEN_URL``, ``CDSE_CATALOGUE_URL`` and ``CDSE_DOWNLOAD_URL``
            from; ``os.environ`` when None. Empty values count as unset.
        token_url, catalogue_url, download_url
            Explicit values (e.g. Dagster resource config); a non-empty value wins over ``env``.
        """
        env = os.environ if env is None else env

        def pick(explicit: str | None, var: str, default: str) -> str:
            if explicit:
                return explicit
            return env.get(var) or default

        return cls(
            token_url=pick(token_url, ENV_TOKEN_URL, DEFAULT_TOKEN_URL),
            catalogue_url=pick(catalogue_url, ENV_CATALOGUE_URL, DEFAULT_CATALOGUE_URL),
            download_url=pick(download_url, ENV_DOWNLOAD_URL, DEFAULT_DOWNLOAD_URL),
        )


@dataclass(frozen=True)
class CdseCredentials:
    """A CDSE account. ``repr``/``str`` show whether values are set, never the values.

    Attributes
    ----------
    username
        Account e-mail / user name.
    password
        Account password.
    totp
        Optional second factor: the current 6-8 digit code, or the base32 TOTP secret.
    """

    username: str = field(repr=False)
    password: str = field(repr=False)
    totp: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise CdseConfigError("CDSE credentials need a non-empty username and password")

    def __repr__(self) -> str:
        return f"CdseCredentials(username=<set>, password=<hidden>, totp={'<hidden>' if self.totp else None})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CdseCredentials:
        """Read ``CDSE_USERNAME``, ``CDSE_PASSWORD`` and optional ``CDSE_TOTP``.

        Raises
        ------
        CdseConfigError
            Naming the missing variable(s) (never their values).
        """
        env = os.environ if env is None else env
        missing = [var for var in (ENV_USERNAME, ENV_PASSWORD) if not env.get(var)]
        if missing:
            raise CdseConfigError(
                f"{' and '.join(missing)} not set: put your Copernicus Data Space account in the "
                "environment or in .env (see .env.example); register for free at "
                "https://dataspace.copernicus.eu"
            )
        return cls(env[ENV_USERNAME], env[ENV_PASSWORD], env.get(ENV_TOTP) or None)
