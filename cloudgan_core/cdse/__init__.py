"""Copernicus Data Space Ecosystem (CDSE) client: search, log in, download SL_1_RBT products.

Plain ``requests``; no Dagster. Typical use::

    endpoints = CdseEndpoints.from_env()
    info = find_product_by_name("S3A_SL_1_RBT____20240101T...", endpoints)   # a full product name
    tokens = TokenManager(endpoints, CdseCredentials.from_env())
    folder = download_product(info, "data/inbox", endpoints=endpoints, tokens=tokens)
"""

from cloudgan_core.cdse.auth import TokenManager, totp_code
from cloudgan_core.cdse.catalogue import (
    MAX_SKIP,
    ProductInfo,
    SearchQuery,
    find_product_by_name,
    iter_products,
    odata_datetime,
    search_products,
)
from cloudgan_core.cdse.config import MAX_CONNECTIONS, CdseCredentials, CdseEndpoints
from cloudgan_core.cdse.discovery import (Discovery, DiscoveryConfig, DiscoveryCursor, DiscoveryPlan, discover,
                                          plan_additions, search_window)
from cloudgan_core.cdse.download import download_product, node_url, product_url
from cloudgan_core.cdse.errors import (
    CdseAuthError,
    CdseConfigError,
    CdseDownloadError,
    CdseError,
    CdseLimitError,
    CdseNotFoundError,
    CdseOfflineError,
    CdseRequestError,
)
from cloudgan_core.cdse.http import RetryPolicy, TransferLimits, same_site
from cloudgan_core.cdse.redact import redact

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_SKIP",
    "CdseAuthError",
    "CdseConfigError",
    "CdseCredentials",
    "CdseDownloadError",
    "CdseEndpoints",
    "CdseError",
    "CdseLimitError",
    "CdseNotFoundError",
    "CdseOfflineError",
    "CdseRequestError",
    "Discovery",
    "DiscoveryConfig",
    "DiscoveryCursor",
    "DiscoveryPlan",
    "ProductInfo",
    "RetryPolicy",
    "SearchQuery",
    "TokenManager",
    "TransferLimits",
    "discover",
    "download_product",
    "find_product_by_name",
    "iter_products",
    "node_url",
    "odata_datetime",
    "plan_additions",
    "product_url",
    "redact",
    "same_site",
    "search_products",
    "search_window",
    "totp_code",
]
