"""Search the CDSE OData catalogue for Sentinel-3 SLSTR Level-1 RBT products.

Searching needs no account. A search is split into time windows and, inside a window, paged
over ``@odata.nextLink``; CDSE refuses ``$skip`` above 10,000, so when a window holds more than
that the search continues from the last product's sensing start (keyset paging) instead.

Every name the catalogue answers with passes :func:`~cloudgan_core.slstr.names.validate_product_id`
(a :class:`ProductInfo` cannot hold anything else): a search skips, and logs, entries that are not
SL_1_RBT product names; a look-up by name accepts only the product asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import requests

from cloudgan_core.cdse.config import CdseEndpoints
from cloudgan_core.cdse.errors import CdseConfigError, CdseNotFoundError, CdseRequestError
from cloudgan_core.cdse.http import (
    Log,
    RetryPolicy,
    TransferLimits,
    error_excerpt,
    get_log,
    get_with_retries,
    read_body,
    url_path,
)
from cloudgan_core.cover import CoverRange
from cloudgan_core.slstr.names import ProductNameError, validate_product_id

COLLECTION = "SENTINEL-3"
PRODUCT_TYPE = "SL_1_RBT___"
#: Largest ``$skip`` the CDSE catalogue accepts.
MAX_SKIP = 10_000
#: Largest ``$top`` the CDSE catalogue accepts.
MAX_PAGE_SIZE = 1000
#: Largest catalogue reply read, in bytes (a full page of 1000 entries is about 5 MB).
MAX_PAGE_BYTES = 64 * 1024 * 1024
_ORDER = re.compile(r"^ContentDate/Start( (asc|desc))?$")
_WKT = re.compile(r"^(MULTI)?POLYGON\s*\(\(?\(.*\)\)?\)$", re.IGNORECASE | re.DOTALL)
_FOOTPRINT = re.compile(r"^geography'(?:SRID=\d+;)?(.*)'$", re.DOTALL)

Timeliness = Literal["NT", "ST", "NR"]
Platform = Literal["S3A", "S3B"]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def odata_datetime(value: datetime) -> str:
    """``2024-05-04T00:02:03.199Z``: UTC (naive means UTC), millisecond precision."""
    value = _utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _string_attr(name: str, value: str) -> str:
    return (
        f"Attributes/OData.CSC.StringAttribute/any(att:att/Name eq {_quote(name)} "
        f"and att/OData.CSC.StringAttribute/Value eq {_quote(value)})"
    )


def _double_attr(name: str, op: str, value: float) -> str:
    return (
        f"Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq {_quote(name)} "
        f"and att/OData.CSC.DoubleAttribute/Value {op} {float(value):.2f})"
    )


@dataclass(frozen=True)
class SearchQuery:
    """A catalogue search for SL_1_RBT products.

    Attributes
    ----------
    start, end
        Sensing-start range ``[start, end)`` (``ContentDate/Start``); naive datetimes are UTC.
    footprint_wkt
        Area of interest as a WKT ``POLYGON``/``MULTIPOLYGON`` in lon/lat (EPSG:4326), or None.
    cloud_cover
        The range of the ``cloudCover`` attribute (percent of cloudy pixels, ``(min, max]``; see
        :class:`~cloudgan_core.cover.CoverRange`), or None. The default (10, 95] % keeps scenes
        that have both clouds and clear sky.
    timeliness
        ``"NT"`` (non time critical, best quality), ``"ST"``, ``"NR"`` (near real time) or None.
    platform
        ``"S3A"``, ``"S3B"`` or None for both.
    orbit_direction
        ``"DESCENDING"`` (daytime over land for SLSTR), ``"ASCENDING"`` or None.
    online_only
        Only products that can be downloaded now (not in the long-term archive).
    max_products
        Stop after this many products; None for all.
    order_by
        OData ``$orderby``; always sent so that paging is stable.
    page_size
        ``$top`` of each request (at most 1000).
    window
        Length of the time windows the range is split into, so ``$skip`` stays small.
    """

    start: datetime
    end: datetime
    footprint_wkt: str | None = None
    cloud_cover: CoverRange | None = CoverRange()
    timeliness: Timeliness | None = None
    platform: Platform | None = None
    orbit_direction: str | None = "DESCENDING"
    online_only: bool = True
    max_products: int | None = None
    order_by: str = "ContentDate/Start asc"
    page_size: int = 100
    window: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if _utc(self.end) <= _utc(self.start):
            raise CdseConfigError(f"search end {self.end} is not after start {self.start}")
        if self.cloud_cover is not None and not isinstance(self.cloud_cover, CoverRange):
            raise CdseConfigError(f"cloud_cover must be a CoverRange (percent) or None, got {self.cloud_cover!r}")
        if self.timeliness not in (None, "NT", "ST", "NR"):
            raise CdseConfigError(f"timeliness must be NT, ST, NR or None, got {self.timeliness!r}")
        if self.platform not in (None, "S3A", "S3B"):
            raise CdseConfigError(f"platform must be S3A, S3B or None, got {self.platform!r}")
        if self.orbit_direction not in (None, "DESCENDING", "ASCENDING"):
            raise CdseConfigError(
                f"orbit_direction must be DESCENDING, ASCENDING or None, got {self.orbit_direction!r}"
            )
        if self.footprint_wkt is not None and not _WKT.match(self.footprint_wkt.strip()):
            raise CdseConfigError(
                "footprint_wkt must be a WKT POLYGON or MULTIPOLYGON in lon/lat, "
                f"e.g. POLYGON((5 45, 15 45, 15 55, 5 55, 5 45)); got {self.footprint_wkt[:80]!r}"
            )
        if self.max_products is not None and self.max_products < 1:
            raise CdseConfigError(f"max_products must be at least 1 or None, got {self.max_products}")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise CdseConfigError(f"page_size must be 1-{MAX_PAGE_SIZE}, got {self.page_size}")
        if self.window <= timedelta(0):
            raise CdseConfigError(f"window must be positive, got {self.window}")
        if not self.order_by.strip():
            raise CdseConfigError("order_by must not be empty (paging needs a stable order)")

    def filter_expression(self, start: datetime | None = None, end: datetime | None = None) -> str:
        """The OData ``$filter`` for this query, for ``[start, end)`` (default: the whole range)."""
        lo = self.start if start is None else start
        hi = self.end if end is None else end
        parts = [
            f"Collection/Name eq {_quote(COLLECTION)}",
            _string_attr("productType", PRODUCT_TYPE),
            f"ContentDate/Start ge {odata_datetime(lo)}",
            f"ContentDate/Start lt {odata_datetime(hi)}",
        ]
        if self.footprint_wkt is not None:
            wkt = " ".join(self.footprint_wkt.split())
            parts.append(f"OData.CSC.Intersects(area=geography'SRID=4326;{wkt}')")
        if self.cloud_cover is not None:  # (min, max], and [0, max] from 0, as CoverRange.contains
            lo = self.cloud_cover.min
            parts.append(_double_attr("cloudCover", "ge" if lo == 0 else "gt", lo))
            parts.append(_double_attr("cloudCover", "le", self.cloud_cover.max))
        if self.timeliness is not None:
            parts.append(_string_attr("timeliness", self.timeliness))
        if self.platform is not None:
            parts.append(_string_attr("platformSerialIdentifier", self.platform[-1]))
        if self.orbit_direction is not None:
            parts.append(_string_attr("orbitDirection", self.orbit_direction))
        if self.online_only:
            parts.append("Online eq true")
        return " and ".join(parts)

    def windows(self) -> list[tuple[datetime, datetime]]:
        """``[start, end)`` split into consecutive windows of ``window`` length (UTC)."""
        out = []
        lo, end = _utc(self.start), _utc(self.end)
        while lo < end:
            hi = min(lo + self.window, end)
            out.append((lo, hi))
            lo = hi
        if self.order_by.strip().endswith(" desc"):
            out.reverse()
        return out


@dataclass(frozen=True)
class ProductInfo:
    """One catalogue entry.

    Attributes
    ----------
    id
        CDSE product UUID (used in download URLs).
    name
        Product name including ``.SEN3`` (given with or without it); always an SL_1_RBT product
        name, else the constructor raises :class:`~cloudgan_core.slstr.names.ProductNameError`.
    size
        Size of the whole zipped product in bytes (``ContentLength``).
    content_start, content_end
        Sensing start and end (UTC).
    footprint_wkt
        Footprint as WKT (lon/lat), or None.
    cloud_cover
        ``cloudCover`` attribute in percent, or None.
    online
        False when the product is in the long-term archive and must be ordered first.
    checksums
        Whole-zip checksums by algorithm, e.g. ``{"MD5": "...", "BLAKE3": "..."}``.
    attributes
        All catalogue attributes by name (``timeliness``, ``orbitDirection``, ...).
    """

    id: str
    name: str
    size: int
    content_start: datetime
    content_end: datetime
    footprint_wkt: str | None = None
    cloud_cover: float | None = None
    online: bool = True
    checksums: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", validate_product_id(self.name, "catalogue entry") + ".SEN3")

    @property
    def key(self) -> str:
        """The name without ``.SEN3``: the Dagster ``products`` partition key (validated again)."""
        return validate_product_id(self.name, "catalogue entry")

    @classmethod
    def from_odata(cls, item: Mapping[str, Any]) -> ProductInfo:
        """Parse one entry of an OData ``Products`` reply (with ``$expand=Attributes``).

        Raises
        ------
        CdseRequestError
            When ``Id``, ``Name`` or ``ContentDate`` is missing or malformed.
        ProductNameError
            When ``Name`` is not an SL_1_RBT product name.
        """
        try:
            ident, name = str(item["Id"]), str(item["Name"])
            start = _parse_time(item["ContentDate"]["Start"])
            end = _parse_time(item["ContentDate"]["End"])
        except (KeyError, TypeError, ValueError) as exc:
            label = str(item.get("Name", "?"))[:120] if isinstance(item, Mapping) else "?"
            raise CdseRequestError(f"catalogue entry {label!r} lacks or garbles {str(exc)[:120]}") from None
        attrs: dict[str, Any] = {}
        for att in item.get("Attributes") or []:
            if isinstance(att, Mapping) and "Name" in att:
                attrs[str(att["Name"])] = att.get("Value")
        checksums = {
            str(c["Algorithm"]).upper(): str(c["Value"]).lower()
            for c in item.get("Checksum") or []
            if isinstance(c, Mapping) and c.get("Algorithm") and c.get("Value")
        }
        cloud = attrs.get("cloudCover")
        return cls(
            id=ident,
            name=name,
            size=int(item.get("ContentLength") or 0),
            content_start=start,
            content_end=end,
            footprint_wkt=_footprint(item),
            cloud_cover=float(cloud) if isinstance(cloud, (int, float)) else None,
            online=bool(item.get("Online", True)),
            checksums=checksums,
            attributes=attrs,
        )


def _parse_time(text: str) -> datetime:
    return _utc(datetime.fromisoformat(str(text).replace("Z", "+00:00")))


def _footprint(item: Mapping[str, Any]) -> str | None:
    text = item.get("Footprint")
    if isinstance(text, str):
        match = _FOOTPRINT.match(text.strip())
        return match.group(1).strip() if match else text.strip() or None
    geo = item.get("GeoFootprint")
    if isinstance(geo, Mapping) and geo.get("type") == "Polygon":
        rings = ", ".join(
            "(" + ", ".join(f"{x:g} {y:g}" for x, y, *_ in ring) + ")" for ring in geo.get("coordinates", [])
        )
        return f"POLYGON({rings})" if rings else None
    return None


def _products_url(endpoints: CdseEndpoints) -> str:
    return f"{endpoints.catalogue_url}/Products"


def _get_page(
    session: requests.Session,
    url: str,
    params: dict[str, str] | None,
    *,
    timeout: float | tuple[float, float],
    policy: RetryPolicy,
    log: Log,
) -> dict[str, Any]:
    resp = get_with_retries(
        session, url, params=params, timeout=timeout, policy=policy, what="catalogue search", log=log
    )
    read = timeout[1] if isinstance(timeout, tuple) else timeout
    watch = TransferLimits().watch(f"CDSE catalogue reply from {url_path(url)}", idle=read)
    with resp:
        if resp.status_code != 200:
            detail = error_excerpt(resp, watch, limit=300)
            raise CdseRequestError(
                f"CDSE catalogue search failed: HTTP {resp.status_code} from {url_path(url)}: {detail}"
            )
        raw = read_body(resp, watch, max_bytes=MAX_PAGE_BYTES)
    try:
        body = json.loads(raw)
    except ValueError:
        raise CdseRequestError(f"CDSE catalogue reply from {url_path(url)} is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise CdseRequestError(f"CDSE catalogue reply from {url_path(url)} has no 'value' list")
    return body


def _parse_entries(values: list[Any], log: Log) -> list[ProductInfo]:
    """The entries of one reply page whose names are SL_1_RBT product names; the others are logged."""
    out = []
    for value in values:
        try:
            out.append(ProductInfo.from_odata(value))
        except ProductNameError as exc:
            log.warning(f"CDSE search: skipping a catalogue entry: {exc}")
    return out


def _next_skip(link: str) -> int:
    values = parse_qs(urlsplit(link).query).get("$skip", ["0"])
    try:
        return int(values[0])
    except ValueError:
        return 0


def iter_products(
    query: SearchQuery,
    endpoints: CdseEndpoints,
    session: requests.Session | None = None,
    *,
    timeout: float | tuple[float, float] = (10.0, 60.0),
    retry: RetryPolicy = RetryPolicy(),
    max_skip: int = MAX_SKIP,
    log: Log | None = None,
) -> Iterator[ProductInfo]:
    """Yield the products matching ``query`` in order, each once, up to ``query.max_products``.

    See :func:`search_products` for the parameters.
    """
    log = get_log(log)
    own_session = session is None
    session = requests.Session() if session is None else session
    url = _products_url(endpoints)
    descending = query.order_by.strip().endswith(" desc")
    keyset_ok = bool(_ORDER.match(query.order_by.strip()))
    seen: set[str] = set()
    try:
        for w_start, w_end in query.windows():
            lo, hi = w_start, w_end
            while True:  # one pass per keyset restart inside this window
                params = {
                    "$filter": query.filter_expression(lo, hi),
                    "$orderby": query.order_by,
                    "$top": str(query.page_size),
                    "$expand": "Attributes",
                }
                page_url: str | None = url
                fetched = new_in_pass = 0
                last: ProductInfo | None = None
                truncated = False
                while page_url is not None:
                    body = _get_page(session, page_url, params, timeout=timeout, policy=retry, log=log)
                    items = _parse_entries(body["value"], log)
                    fetched += len(items)
                    for info in items:
                        last = info
                        if info.id in seen:
                            continue
                        seen.add(info.id)
                        new_in_pass += 1
                        yield info
                        if query.max_products is not None and len(seen) >= query.max_products:
                            return
                    link = body.get("@odata.nextLink")
                    full = len(items) >= query.page_size
                    if isinstance(link, str) and link and _next_skip(link) <= max_skip:
                        page_url, params = link, None
                    else:
                        # CDSE drops nextLink (or we refuse it) once $skip would pass the cap.
                        truncated = full and (fetched >= max_skip or bool(link))
                        page_url = None
                if not truncated or last is None:
                    break
                if not keyset_ok:
                    raise CdseRequestError(
                        f"more than {max_skip} products in one search window ({odata_datetime(lo)} to "
                        f"{odata_datetime(hi)}) and order_by {query.order_by!r} does not allow paging "
                        "past that; use a smaller SearchQuery.window"
                    )
                if new_in_pass == 0:
                    raise CdseRequestError(
                        f"cannot page past {fetched} products sharing sensing start {odata_datetime(last.content_start)}"
                    )
                # Restart from the last sensing start; the overlap is removed by id.
                boundary = last.content_start.replace(microsecond=last.content_start.microsecond // 1000 * 1000)
                if descending:
                    hi = boundary + timedelta(milliseconds=1)
                else:
                    lo = boundary
                log.debug(f"CDSE search: $skip cap reached, continuing from {odata_datetime(boundary)}")
    finally:
        if own_session:
            session.close()


def search_products(
    query: SearchQuery,
    endpoints: CdseEndpoints,
    session: requests.Session | None = None,
    *,
    timeout: float | tuple[float, float] = (10.0, 60.0),
    retry: RetryPolicy = RetryPolicy(),
    max_skip: int = MAX_SKIP,
    log: Log | None = None,
) -> list[ProductInfo]:
    """Search the catalogue (no account needed).

    Parameters
    ----------
    query
        What to look for.
    endpoints
        Where the catalogue is (``endpoints.catalogue_url``).
    session
        ``requests.Session`` to use; a new one (closed afterwards) when None.
    timeout
        ``(connect, read)`` seconds for each request.
    retry
        Retries for network errors, 429 and 5xx.
    max_skip
        Largest ``$skip`` the server accepts (CDSE: 10,000).
    log
        Logger for retries and paging notes.

    Returns
    -------
    list of ProductInfo
        In ``query.order_by`` order, without duplicates, at most ``query.max_products``.

    Raises
    ------
    CdseRequestError
        When the catalogue cannot be reached or answers with an error.
    """
    return list(
        iter_products(query, endpoints, session, timeout=timeout, retry=retry, max_skip=max_skip, log=log)
    )


def find_product_by_name(
    name: str,
    endpoints: CdseEndpoints,
    session: requests.Session | None = None,
    *,
    timeout: float | tuple[float, float] = (10.0, 60.0),
    retry: RetryPolicy = RetryPolicy(),
    log: Log | None = None,
) -> ProductInfo:
    """Look a product up by name (``Name eq '<name>.SEN3'``).

    Parameters
    ----------
    name
        Product name with or without ``.SEN3`` (a trailing ``.zip`` is ignored too).

    Returns
    -------
    ProductInfo
        The catalogue entry named exactly ``<name>.SEN3``.

    Raises
    ------
    ProductNameError
        When ``name`` is not an SL_1_RBT product name (nothing is sent).
    CdseNotFoundError
        When the catalogue has no product of that name.
    CdseRequestError
        When the catalogue cannot be reached, answers with an error, or answers with another
        product's name.
    """
    full = validate_product_id(name.strip(), "product to look up") + ".SEN3"
    own_session = session is None
    session = requests.Session() if session is None else session
    url = _products_url(endpoints)
    params = {"$filter": f"Name eq {_quote(full)}", "$expand": "Attributes", "$top": "2",
              "$orderby": "ContentDate/Start asc"}
    try:
        body = _get_page(session, url, params, timeout=timeout, policy=retry, log=get_log(log))
    finally:
        if own_session:
            session.close()
    answered = [v.get("Name") if isinstance(v, Mapping) else None for v in body["value"]]
    exact = [v for v, n in zip(body["value"], answered) if n == full]
    if exact:
        return ProductInfo.from_odata(exact[0])
    if answered:
        shown = ", ".join(repr(str(n)[:120]) for n in answered)
        raise CdseRequestError(
            f"the CDSE catalogue at {url_path(url)} answered the look-up of {full} with {shown} instead of "
            "that product; refusing to use the answer"
        )
    raise CdseNotFoundError(
        f"no product named {full} in the CDSE catalogue at {url_path(url)}; check the name "
        "(it looks like S3A_SL_1_RBT____<start>_<stop>_..._NT_004)"
    )
