"""Parse the SAFE manifest (``xfdumanifest.xml``) of a Sentinel-3 SLSTR product.

The manifest names the product, its type and timeliness, gives the classification summary
(cloudy-pixel percentage), the footprint, and the size and MD5 of every file in the product.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from cloudgan_core.errors import ProductError

MANIFEST_NAME = "xfdumanifest.xml"
#: Largest manifest accepted, in bytes (real ones are about 100 kB).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ManifestFile:
    """One file listed in the manifest's data-object section.

    Attributes
    ----------
    name
        Path relative to the ``.SEN3`` folder, e.g. ``"S1_radiance_an.nc"``.
    size
        Size in bytes.
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


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_text(root: ET.Element, name: str) -> str | None:
    for el in root.iter():
        if _local(el.tag) == name and el.text is not None:
            return el.text.strip()
    return None


def _footprint_wkt(pos_list: str | None) -> str | None:
    """Turn a GML ``posList`` ("lat lon lat lon ...") into a WKT polygon (lon lat order)."""
    if not pos_list:
        return None
    values = [float(v) for v in pos_list.split()]
    if len(values) < 6 or len(values) % 2:
        return None
    pairs = [(values[i + 1], values[i]) for i in range(0, len(values), 2)]
    if pairs[0] != pairs[-1]:
        pairs.append(pairs[0])
    return "POLYGON((" + ", ".join(f"{lon:g} {lat:g}" for lon, lat in pairs) + "))"


def _cloudy_percentage(root: ET.Element) -> float | None:
    # Prefer the 0.5 km stripe-A summary (the grid the mask comes from), else the first one.
    found: list[tuple[str, float]] = []
    for summary in root.iter():
        if _local(summary.tag) != "classificationSummary":
            continue
        for child in summary:
            if _local(child.tag) == "cloudyPixels" and "percentage" in child.attrib:
                found.append((summary.attrib.get("grid", ""), float(child.attrib["percentage"])))
    for grid, value in found:
        if "stripe A" in grid:
            return value
    return found[0][1] if found else None


def parse_manifest(xml: bytes, source: str = MANIFEST_NAME) -> Manifest:
    """Parse manifest bytes.

    Parameters
    ----------
    xml
        The bytes of ``xfdumanifest.xml``.
    source
        Where the bytes came from, used in error messages.

    Raises
    ------
    ProductError
        If the bytes are not XML or lack the product name or type.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ProductError(source, f"manifest is not valid XML ({exc})") from None
    name = _find_text(root, "productName")
    ptype = _find_text(root, "productType")
    if not name or not ptype:
        raise ProductError(source, "manifest has no productName/productType; is this a Sentinel-3 product?")

    files: dict[str, ManifestFile] = {}
    for obj in root.iter():
        if _local(obj.tag) != "byteStream":
            continue
        href = md5 = None
        for child in obj:
            if _local(child.tag) == "fileLocation":
                href = child.attrib.get("href")
            elif _local(child.tag) == "checksum" and child.attrib.get("checksumName", "").upper() == "MD5":
                md5 = (child.text or "").strip().lower()
        if href and md5:
            rel = href.removeprefix("./")
            files[rel] = ManifestFile(rel, int(obj.attrib.get("size", -1)), md5)

    platform = (_find_text(root, "familyName") or "Sentinel-3").replace("Sentinel-", "S")
    number = _find_text(root, "number") or ""
    return Manifest(
        product_name=name if name.endswith(".SEN3") else name + ".SEN3",
        product_type=ptype,
        timeliness=_find_text(root, "timeliness") or "",
        platform=f"{platform}{number}",
        start_time=_find_text(root, "startTime") or "",
        stop_time=_find_text(root, "stopTime") or "",
        cloudy_pixels_percentage=_cloudy_percentage(root),
        footprint_wkt=_footprint_wkt(_find_text(root, "posList")),
        files=files,
    )


def md5_hex(data: bytes) -> str:
    """MD5 of ``data`` as lower-case hex."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
