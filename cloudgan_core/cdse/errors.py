"""Exceptions raised by the Copernicus Data Space (CDSE) client.

Messages name the endpoint path, product or file and the problem. They never contain a
username, password, TOTP code, access token or refresh token.
"""

from __future__ import annotations

from cloudgan_core.errors import CloudGANError


class CdseError(CloudGANError):
    """Base class of every CDSE client error."""


class CdseConfigError(CdseError):
    """A setting (environment variable, endpoint URL, search parameter) is missing or invalid."""


class CdseAuthError(CdseError):
    """Logging in to CDSE (or refreshing the access token) failed."""


class CdseRequestError(CdseError):
    """An HTTP request to CDSE failed after its retries (network error, 5xx, unexpected reply)."""


class CdseLimitError(CdseRequestError):
    """A reply broke a limit: larger than allowed, slower than ``min_rate``, silent, or past its deadline."""


class CdseNotFoundError(CdseError):
    """The catalogue has no product of that name, or a file is not in the product."""


class CdseDownloadError(CdseError):
    """A product or file could not be downloaded intact."""


class CdseOfflineError(CdseDownloadError):
    """The product is in the long-term archive (``Online`` is false) and cannot be downloaded now."""
