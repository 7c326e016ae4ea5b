"""Stage ``products``: a verified copy of the files the pipeline reads, per product.

Files under ``<root>/products/<key>/``::

    <key>.SEN3/       the manifest, flags_an.nc, geometry_tn.nc, S1-S6 radiance and quality
                      (``S{n}_radiance_an.nc``, ``S{n}_quality_an.nc``), S7-S9 brightness
                      temperature (``S{n}_BT_in.nc``) (plus indices_an.nc when the product has
                      it), each checked against the manifest's size and MD5 while it was copied
    product.json      what the manifest says (platform, times, cloud cover...), the source, and
                      the MD5 of every copied file

A product comes from the inbox (``<inbox>/<key>.zip`` or ``<key>.SEN3``) or, when it is not
there, from a download (the ``fetch`` argument of :func:`build`, e.g. the Copernicus client).
:func:`register` is the writer; :func:`read` gives the stored ``.SEN3`` folder to the stages
that read the product (``masks``, ``false_color``, ``tiles``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudgan_core.atomic import atomic_dir, require_inputs, write_text
from cloudgan_core.cdse.errors import CdseError
from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.manifest import MANIFEST_NAME, short_repr
from cloudgan_core.slstr.names import ProductNameError, is_product_id, product_id, validate_product_id
from cloudgan_core.slstr.product import OPTIONAL_FILES, PIPELINE_FILES, open_product
from cloudgan_core.stages.base import Preview
from cloudgan_core.storage import UnsafePathError, asset_dir, inside

NAME = "products"
#: The record of a registered product, beside its ``.SEN3`` folder.
RECORD = "product.json"
#: Folder of the storage root where downloads are staged until they are registered.
DOWNLOADS = "downloads"

#: The variable (and file, with ``.nc``) the quicklook preview shows, and its longest side in pixels.
QUICKLOOK_VARIABLE = "S3_radiance_an"
QUICKLOOK_SIDE = 480

#: ``fetch(key, dest_dir) -> path``: downloads product ``key`` into ``dest_dir`` and returns the
#: ``<key>.SEN3`` folder or ``<key>.zip`` it wrote there.
Fetch = Callable[[str, Path], Path]


@dataclass(frozen=True)
class ProductsResult:
    """A registered product: the stored ``.SEN3`` folder (``path``) and what its manifest says."""

    path: Path
    product: str
    timeliness: str
    platform: str
    start_time: str
    cloudy_pixels_percentage: float | None
    footprint_wkt: str | None
    files_verified: int
    bytes: int
    source: Path
    origin: str = "inbox"
    notes: tuple[str, ...] = ()

    def figures(self) -> dict[str, object]:
        return {"product": self.product, "timeliness": self.timeliness, "platform": self.platform,
                "start_time": self.start_time, "cloudy_pixels_percentage": self.cloudy_pixels_percentage,
                "footprint_wkt": self.footprint_wkt, "files_verified": self.files_verified, "bytes": self.bytes,
                "source": str(self.source), "origin": self.origin}

    def preview(self) -> Preview | None:
        return Preview(quicklook(self.path), f"quicklook: {QUICKLOOK_VARIABLE} (0.555 um), 2-98 % stretch")


def quicklook(sen3: Path, max_side: int = QUICKLOOK_SIDE) -> np.ndarray:
    """A grey quicklook (uint8) of a product: its S3 radiance, every n-th pixel so that the longer
    side is at most ``max_side`` pixels, stretched between the 2nd and 98th percentiles of the
    valid pixels; fill is black. Reads one file of the (verified) ``.SEN3`` folder ``sen3``.

    Raises
    ------
    ProductError
        The radiance file or variable is missing or unreadable.
    """
    with open_product(sen3) as product, product.open_netcdf(f"{QUICKLOOK_VARIABLE}.nc", [QUICKLOOK_VARIABLE]) as nc:
        packing = nc.packing(QUICKLOOK_VARIABLE)
        stored = nc.read(QUICKLOOK_VARIABLE)
    step = max(1, -(-max(stored.shape) // max_side))
    radiance = packing.unpack(np.ascontiguousarray(stored[::step, ::step]))
    valid = np.isfinite(radiance)
    if not valid.any():
        return np.zeros(radiance.shape, np.uint8)
    low, high = np.percentile(radiance[valid], [2, 98])
    scaled = (np.nan_to_num(radiance, nan=low) - low) / max(float(high - low), 1e-6)
    return np.rint(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def folder(root: Path, key: str) -> Path:
    """``<root>/products/<key>``."""
    return asset_dir(root, NAME, key)


def find_in_inbox(inbox: Path, key: str) -> Path | None:
    """The ``<key>.SEN3`` or ``<key>.zip`` in ``inbox``, or None."""
    for candidate in (inbox / f"{key}.SEN3", inbox / f"{key}.zip"):
        if candidate.exists():
            return candidate
    return None


def inbox_products(inbox: Path) -> list[str]:
    """Product ids of the ``.zip``/``.SEN3`` entries in ``inbox`` (sorted, without suffix); entries
    whose names are not SL_1_RBT product names are left out."""
    if not inbox.is_dir():
        return []
    keys = {product_id(p.name) for p in inbox.iterdir()
            if (p.suffix == ".zip" and p.is_file()) or (p.suffix == ".SEN3" and p.is_dir())}
    return sorted(k for k in keys if is_product_id(k))


def register(root: Path, source: Path, key: str | None = None, *, origin: str = "inbox") -> ProductsResult:
    """Copy the files the pipeline reads from a product into ``<root>/products/<key>``, verifying
    every size and MD5 (the writer of this stage).

    ``source`` may be a ``.zip`` (read member by member, never unpacked whole) or a ``.SEN3``
    folder. The store gets ``<key>.SEN3/`` with the manifest and the pipeline files (plus optional
    ones when present), swapped in whole once all are verified. Each file is streamed (read a
    chunk, update the MD5, write the chunk), so memory stays bounded whatever the product holds;
    see :mod:`cloudgan_core.slstr.product` for the limits.

    Parameters
    ----------
    key
        The partition the product is registered as; None takes the manifest's product id.
        A product whose manifest names another product is refused.
    origin
        Where ``source`` came from (``"inbox"``, ``"CDSE download"``), for the figures.

    Raises
    ------
    ProductError
        The product is unusable (see :func:`~cloudgan_core.slstr.product.open_product`), misses a
        file the pipeline reads, or is not ``key``.
    """
    with open_product(source) as product:
        if key is not None and product.id != key:
            raise ProductError(source, f"manifest names product {product.id}, expected {key}")
        product.require(PIPELINE_FILES)
        names = list(PIPELINE_FILES) + [f for f in OPTIONAL_FILES if product.has(f)]
        digests: dict[str, str] = {}
        total = 0
        store = folder(root, product.id)
        with atomic_dir(store) as tmp:
            sen3 = tmp / product.name  # a validated SL_1_RBT name: one plain path component
            sen3.mkdir()
            for name in names:
                digest = product.copy_to(name, sen3 / name)  # write errors (a full disk) propagate
                if name != MANIFEST_NAME:
                    digests[name] = digest
                total += (sen3 / name).stat().st_size
        m = product.manifest
    result = ProductsResult(store / m.product_name, product=m.product_id, timeliness=m.timeliness,
                            platform=m.platform, start_time=m.start_time,
                            cloudy_pixels_percentage=m.cloudy_pixels_percentage, footprint_wkt=m.footprint_wkt,
                            files_verified=len(digests), bytes=total, source=Path(source), origin=origin)
    record = {k: v for k, v in result.figures().items() if k != "origin"}
    write_text(store / RECORD, json.dumps({**record, "md5": digests}, indent=2, sort_keys=True))
    return result


def read(root: Path, key: str) -> Path:
    """The stored ``.SEN3`` folder of product ``key``.

    Raises
    ------
    MissingInputError
        ``products`` was not materialized for ``key``.
    ProductError
        No product, more than one, a symbolic link, or a folder whose name is not an SL_1_RBT name.
    """
    store = folder(root, key)
    require_inputs(products=store)
    found = sorted(store.glob("*.SEN3"))
    if not found:
        raise ProductError(store, "no registered product here; materialize the products asset first")
    if len(found) > 1:
        raise ProductError(store, f"holds {len(found)} products ({', '.join(short_repr(p.name) for p in found[:3])}"
                                  f"{', ...' if len(found) > 3 else ''}); expected one: materialize the products "
                                  f"asset again")
    sen3 = found[0]
    if sen3.is_symlink() or not sen3.is_dir():
        raise ProductError(sen3, "is not a folder (a symbolic link?); refusing to read it: materialize the products "
                                 "asset again")
    try:
        validate_product_id(sen3.name, f"stored product in {store}")
    except ProductNameError as exc:
        raise ProductError(sen3, str(exc)) from None
    return sen3


def build(root: Path, key: str, *, inbox: Path, fetch: Fetch | None = None,
          log: Callable[[str], object] | None = None) -> ProductsResult:
    """Register product ``key`` from the inbox, or else download it with ``fetch``.

    A download is staged in ``<root>/downloads/`` and removed once registered. ``log`` gets a line
    saying where the product comes from.

    Raises
    ------
    ProductNameError
        ``key`` is not an SL_1_RBT product name (checked before it names any file).
    ProductError
        Not in the inbox and no ``fetch``, the download failed (the message says why), or the
        product is unusable.
    UnsafePathError
        ``fetch`` returned a path other than ``<root>/downloads/<key>.SEN3`` or ``.zip``.
    """
    key = validate_product_id(key, "products partition key")
    say = log or (lambda line: None)
    source = find_in_inbox(inbox, key)
    if source is not None:
        say(f"registering {source}")
        return register(root, source, key)
    where = f"not found in the inbox {inbox} (as {key}.zip or {key}.SEN3)"
    if fetch is None:
        raise ProductError(key, f"{where}, and no download is configured")
    downloads = asset_dir(root, DOWNLOADS)
    say(f"{key} is not in the inbox {inbox}; downloading it")
    try:
        source = fetch(key, downloads)
    except CdseError as exc:
        raise ProductError(key, f"{where}, and the CDSE download failed: {exc}") from exc
    # Only ever remove <key>.SEN3 or <key>.zip inside downloads/.
    if source.name not in (f"{key}.SEN3", f"{key}.zip") or source != inside(downloads, source.name):
        raise UnsafePathError(f"the download of {key} ended at {source}, not {downloads}/{key}.SEN3 or .zip")
    say(f"registering {source}")
    result = register(root, source, key, origin="CDSE download")
    if source.is_dir():  # the store now holds the verified files: drop the staging copy
        shutil.rmtree(source, ignore_errors=True)
    else:
        source.unlink(missing_ok=True)
    return result
