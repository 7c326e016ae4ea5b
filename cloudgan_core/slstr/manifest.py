"""Parse the SAFE manifest (``xfdumanifest.xml``) of a Sentinel-3 SLSTR product.

The manifest names the product, its type and timeliness, gives the classification summary
(cloudy-pixel percentage), the footprint, and the size and MD5 of every file in the product.

A manifest is untrusted input: it is at most :data:`MAX_MANIFEST_BYTES`, may not declare a
DOCTYPE (so no entity can expand), and is read as a stream of parser events that keeps only the
fields above, never a tree of every element. Every number in it is checked; a bad one is a
:class:`~cloudgan_core.errors.ProductError` naming the manifest and the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from xml.parsers import expat

from cloudgan_core.errors import ProductError

MANIFEST_NAME = "xfdumanifest.xml"
#: Largest manifest read, in bytes (real SL_1_RBT manifests are about 250 kB).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: Longest text kept from one manifest element, in characters (the footprint's ``posList`` is the
#: longest in real products: about 1 200).
MAX_TEXT_CHARS = 64 * 1024

#: Elements whose first non-empty text is kept.
_TEXT_FIELDS = frozenset({"productName", "productType", "timeliness", "familyName", "number", "startTime",
                          "stopTime", "posList"})
_SIZE = re.compile(r"[0-9]{1,15}")
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ManifestFile:
    """One file listed in the manifest's data-object section.

    Attributes
    ----------
    name
        Path relative to the ``.SEN3`` folder, e.g. ``"S1_radiance_an.nc"``.
    size
        Size in bytes; -1 when the manifest gives none.
    md5
        Lower-case hexadecimal MD5 digest.
    """

    name: str
    size: int
    md5: str


@dataclass(frozen=True)
class Manifest:
    """What the pipeline uses from ``xfdumanifest.xml``."""

    product_name: str
    product_type: str
    timeliness: str
    platform: str
    start_time: str
    stop_time: str
    cloudy_pixels_percentage: float | None
    footprint_wkt: str | None
    files: dict[str, ManifestFile] = field(default_factory=dict)

    @property
    def product_id(self) -> str:
        """Product name without the ``.SEN3`` suffix (the Dagster partition key)."""
        return self.product_name.removesuffix(".SEN3")


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for quoting untrusted input in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _footprint_wkt(pos_list: str | None, source: str) -> str | None:
    """Turn a GML ``posList`` ("lat lon lat lon ...") into a WKT polygon (lon lat order)."""
    if not pos_list:
        return None
    try:
        values = [float(v) for v in pos_list.split()]
    except ValueError:
        values = [math.nan]
    if not all(math.isfinite(v) for v in values):
        raise ProductError(source, f"footprint posList is not a list of numbers: {short_repr(pos_list)}")
    if len(values) < 6 or len(values) % 2:
        return None
    pairs = [(values[i + 1], values[i]) for i in range(0, len(values), 2)]
    if pairs[0] != pairs[-1]:
        pairs.append(pairs[0])
    return "POLYGON((" + ", ".join(f"{lon:g} {lat:g}" for lon, lat in pairs) + "))"


class _Reader:
    """Collects the manifest's fields from expat events (no element tree: memory stays bounded by
    the fields kept)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.text: dict[str, str] = {}  # first non-empty text of each of _TEXT_FIELDS
        self.files: dict[str, ManifestFile] = {}
        self.cloudy: list[tuple[str, float]] = []  # (grid, percentage) of each classification summary
        self._open: list[str] = []  # local names of the open elements
        self._collect: tuple[str, int] | None = None  # (field, depth) of the element whose text is read
        self._parts: list[str] = []
        self._length = 0
        self._stream: dict[str, str | None] | None = None  # the byteStream being read
        self._grid = ""

    # expat handlers ------------------------------------------------------------------------------
    def doctype(self, *_: object) -> None:
        raise ProductError(self.source, "manifest has a DOCTYPE declaration; refusing it (its entities could expand "
                                        "without bound, and a Sentinel-3 manifest has none)")

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rsplit(" ", 1)[-1]
        parent = self._open[-1] if self._open else ""
        self._finish_text()  # an element's text is what precedes its first child
        if local in _TEXT_FIELDS and local not in self.text:
            self._begin_text(local)
        elif local == "byteStream":
            self._stream = {"size": attrs.get("size"), "href": None, "md5": None}
        elif local == "fileLocation" and parent == "byteStream" and self._stream is not None:
            self._stream["href"] = attrs.get("href")
        elif (local == "checksum" and parent == "byteStream" and self._stream is not None
              and attrs.get("checksumName", "").upper() == "MD5"):
            self._begin_text("checksum")
        elif local == "classificationSummary":
            self._grid = attrs.get("grid", "")
        elif local == "cloudyPixels" and parent == "classificationSummary" and "percentage" in attrs:
            self.cloudy.append((self._grid, self._percentage(attrs["percentage"])))
        self._open.append(local)

    def data(self, text: str) -> None:
        if self._collect is not None:
            self._length += len(text)
            if self._length > MAX_TEXT_CHARS:
                raise ProductError(self.source, f"manifest element <{self._collect[0]}> holds more than "
                                                f"{MAX_TEXT_CHARS} characters; refusing it")
            self._parts.append(text)

    def end(self, name: str) -> None:
        local = self._open.pop()
        if self._collect is not None and self._collect[1] == len(self._open):
            self._finish_text()
        if local == "byteStream" and self._stream is not None:
            self._add_file(self._stream)
            self._stream = None

    # helpers -------------------------------------------------------------------------------------
    def _begin_text(self, name: str) -> None:
        self._collect, self._parts, self._length = (name, len(self._open)), [], 0

    def _finish_text(self) -> None:
        if self._collect is None:
            return
        name, text = self._collect[0], "".join(self._parts).strip()
        self._collect, self._parts = None, []
        if name == "checksum":
            if self._stream is not None:
                self._stream["md5"] = text.lower()
        elif text and name not in self.text:
            self.text[name] = text

    def _percentage(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 100.0:  # false for NaN too
            raise ProductError(self.source, f"cloudyPixels percentage {short_repr(raw)} is not a number from 0 to 100")
        return value

    def _add_file(self, stream: dict[str, str | None]) -> None:
        href, md5, size = stream["href"], stream["md5"], stream["size"]
        if not href or not md5:
            return
        rel = href.removeprefix("./")
        if size is not None and not _SIZE.fullmatch(size):
            raise ProductError(self.source, f"manifest gives {short_repr(rel)} the size {short_repr(size)}; expected "
                                            f"a whole number of bytes")
        if not _MD5.fullmatch(md5):
            raise ProductError(self.source, f"manifest gives {short_repr(rel)} the MD5 {short_repr(md5)}; expected 32 "
                                            f"hexadecimal digits")
        self.files[rel] = ManifestFile(rel, -1 if size is None else int(size), md5)


def parse_manifest(xml: bytes, source: str = MANIFEST_NAME) -> Manifest:
    """Parse manifest bytes.

    Parameters
    ----------
    xml
        The bytes of ``xfdumanifest.xml``, at most :data:`MAX_MANIFEST_BYTES`.
    source
        Where the bytes came from, used in error messages.

    Raises
    ------
    ProductError
        The bytes are too many or not XML, declare a DOCTYPE, lack the product name or type, or
        hold a size, MD5, percentage or footprint that is not a valid number.
    """
    if len(xml) > MAX_MANIFEST_BYTES:
        raise ProductError(source, f"manifest is {len(xml)} bytes; more than the limit of {MAX_MANIFEST_BYTES} "
                                   f"({MAX_MANIFEST_BYTES // 2**20} MiB)")
    reader = _Reader(source)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = reader.doctype
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.data
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as exc:
        raise ProductError(source, f"manifest is not valid XML ({exc})") from None
    name = reader.text.get("productName")
    ptype = reader.text.get("productType")
    if not name or not ptype:
        raise ProductError(source, "manifest has no productName/productType; is this a Sentinel-3 product?")

    # Prefer the 0.5 km stripe-A summary (the grid the mask comes from), else the first one.
    stripe_a = [v for grid, v in reader.cloudy if "stripe A" in grid]
    cloudy = (stripe_a or [v for _, v in reader.cloudy] or [None])[0]
    platform = reader.text.get("familyName", "Sentinel-3").replace("Sentinel-", "S")
    return Manifest(
        product_name=name if name.endswith(".SEN3") else name + ".SEN3",
        product_type=ptype,
        timeliness=reader.text.get("timeliness", ""),
        platform=f"{platform}{reader.text.get('number', '')}",
        start_time=reader.text.get("startTime", ""),
        stop_time=reader.text.get("stopTime", ""),
        cloudy_pixels_percentage=cloudy,
        footprint_wkt=_footprint_wkt(reader.text.get("posList"), source),
        files=reader.files,
    )
