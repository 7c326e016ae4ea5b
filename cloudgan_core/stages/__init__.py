"""The per-product stages of the pipeline as plain functions over folders.

Each stage reads the previous stage's folder and writes its own (every file under a temporary
name, then renamed). The Dagster assets call these; so can a notebook or a script.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_text
from cloudgan_core.errors import ProductError
from cloudgan_core.settings import check_fraction
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS, PIXEL_FLAGS, scene_masks, scene_shape
from cloudgan_core.slstr.manifest import MANIFEST_NAME, Manifest, short_repr
from cloudgan_core.slstr.names import is_product_id
from cloudgan_core.slstr.product import (FALSE_COLOR_BANDS, OPTIONAL_FILES, PIPELINE_FILES, open_product,
                                         product_id)
from cloudgan_core.slstr.radiance import (detector_index, false_color, no_reflectance_reason, reflectance,
                                          valid_pixels)
from cloudgan_core.slstr.geometry import solar_zenith
from cloudgan_core.slstr.names import ProductNameError, validate_product_id
from cloudgan_core.tiles import (DEFAULT_BIN_EDGES, DEFAULT_TILE_SIZE, Tiles, bin_counts, check_bin_edges,
                                 check_cover_range, check_tile_size, read_tiles, slice_tiles, sort_tiles, write_tiles)


@dataclass
class StageResult:
    """What a stage wrote and the figures a user wants to see."""

    path: Path
    figures: dict = field(default_factory=dict)
    preview: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def find_in_inbox(inbox: Path, key: str) -> Path | None:
    """The ``<key>.zip`` or ``<key>.SEN3`` in ``inbox``, or None."""
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


def stored_product(store_dir: Path) -> Path:
    """The ``.SEN3`` folder inside a partition's ``products`` folder.

    Raises
    ------
    ProductError
        No product, more than one, a symbolic link, or a folder whose name is not an SL_1_RBT name.
    """
    require_inputs(products=store_dir)
    found = sorted(store_dir.glob("*.SEN3"))
    if not found:
        raise ProductError(store_dir, "no registered product here; materialize the products asset first")
    if len(found) > 1:
        raise ProductError(store_dir, f"holds {len(found)} products ({', '.join(short_repr(p.name) for p in found[:3])}"
                                      f"{', ...' if len(found) > 3 else ''}); expected one: materialize the products "
                                      f"asset again")
    folder = found[0]
    if folder.is_symlink() or not folder.is_dir():
        raise ProductError(folder, "is not a folder (a symbolic link?); refusing to read it: materialize the products "
                                   "asset again")
    try:
        validate_product_id(folder.name, f"stored product in {store_dir}")
    except ProductNameError as exc:
        raise ProductError(folder, str(exc)) from None
    return folder


def register_product(source: Path, store_dir: Path, *, expected_id: str | None = None) -> StageResult:
    """Copy the files the pipeline reads from a product into the store, verifying every size and MD5.

    ``source`` may be a ``.zip`` (read member by member, never unpacked whole) or a ``.SEN3``
    folder. The store gets ``<store_dir>/<name>.SEN3/`` with the manifest and the pipeline files
    (plus optional ones when present), swapped in whole once all are verified. Each file is
    streamed (read a chunk, update the MD5, write the chunk), so memory stays bounded whatever the
    product holds; see :mod:`cloudgan_core.slstr.product` for the limits.
    """
    with open_product(source) as product:
        if expected_id and product.id != expected_id:
            raise ProductError(source, f"manifest names product {product.id}, expected {expected_id}")
        product.require(PIPELINE_FILES)
        names = list(PIPELINE_FILES) + [f for f in OPTIONAL_FILES if product.has(f)]
        digests: dict[str, str] = {}
        total = 0
        with atomic_dir(store_dir) as tmp:
            folder = tmp / product.name  # a validated SL_1_RBT name: one plain path component
            folder.mkdir()
            for name in names:
                digest = product.copy_to(name, folder / name)  # write errors (a full disk) propagate
                if name != MANIFEST_NAME:
                    digests[name] = digest
                total += (folder / name).stat().st_size
        m: Manifest = product.manifest
    figures = {"product": m.product_id, "timeliness": m.timeliness, "platform": m.platform,
               "start_time": m.start_time, "cloudy_pixels_percentage": m.cloudy_pixels_percentage,
               "footprint_wkt": m.footprint_wkt, "files_verified": len(digests), "bytes": total,
               "source": str(source)}
    write_text(store_dir / "product.json", json.dumps({**figures, "md5": digests}, indent=2, sort_keys=True))
    return StageResult(store_dir / m.product_name, figures)


def compute_masks(product_dir: Path, out_dir: Path, *, source: str = "summary_cloud", max_solar_zenith: float = 85.0,
                  verify: bool = False) -> StageResult:
    """Cloud mask and per-pixel flags → ``flags.npy`` (uint16 bits), ``cloud.npy`` (uint8 0/1), ``masks.json``."""
    with open_product(product_dir) as product:
        if verify:
            product.verify(["flags_an.nc", "geometry_tn.nc"])
        masks = scene_masks(product, source=source, max_solar_zenith=max_solar_zenith)
        cloudy_pct = product.manifest.cloudy_pixels_percentage
    figures = {"rows": masks.shape[0], "columns": masks.shape[1], "cloud_source": masks.source,
               **{k: round(v, 6) for k, v in masks.fractions().items()},
               "manifest_cloudy_pixels_percentage": cloudy_pct}
    with atomic_dir(out_dir) as tmp:  # the folder is swapped in whole: its files always belong together
        save_npy(tmp / "flags.npy", masks.flags)
        save_npy(tmp / "cloud.npy", masks.cloud.view(np.uint8))
        write_text(tmp / "masks.json", json.dumps({**figures, "pixel_flags": list(PIXEL_FLAGS), "notes": masks.notes},
                                                  indent=2, sort_keys=True))
    return StageResult(out_dir, figures, preview=masks.cloud, notes=masks.notes)


def compute_false_color(product_dir: Path, out_dir: Path, *, adjust: bool = True, save_reflectance: bool = True,
                        bands: Sequence[str] = FALSE_COLOR_BANDS) -> StageResult:
    """Reflectance of ``bands`` and the false-colour image → ``false_color.npy`` (uint8 rows x cols x 3),
    ``valid.npy`` (uint8 rows x cols, 1 where the reflectance is finite in S1, S3 and S5),
    ``reflectance.npy`` (float32 bands x rows x cols, optional) and ``false_color.json``.

    Raises
    ------
    ProductError
        The product is unusable, or no pixel has a finite reflectance in every false-colour band
        ("no valid visible pixel": all fill, night, no usable solar irradiance); nothing is written.
    """
    bands = list(dict.fromkeys([*FALSE_COLOR_BANDS, *bands]))
    with open_product(product_dir) as product:
        shape = scene_shape(product)
        sza = solar_zenith(product, shape)
        det = detector_index(product, shape)
        refl = {b: reflectance(product, b, sza, adjust=adjust, detectors=det) for b in bands}
        key = product.id
    valid = valid_pixels(*(refl[b] for b in FALSE_COLOR_BANDS))
    n_valid = int(np.count_nonzero(valid))
    if n_valid == 0:
        raise ProductError(product_dir, f"no valid visible pixel in {key}: the {'/'.join(FALSE_COLOR_BANDS)} "
                                        f"reflectance is finite nowhere ({no_reflectance_reason(sza)})")
    image = false_color(refl["S1"], refl["S3"], refl["S5"])

    def median(values: np.ndarray) -> float | None:
        finite = values[np.isfinite(values)]
        return round(float(np.median(finite)), 4) if finite.size else None

    figures = {"rows": shape[0], "columns": shape[1], "bands": ",".join(bands), "adjustment_factors": adjust,
               "valid_fraction": round(n_valid / valid.size, 6),
               "solar_zenith_min": round(float(np.nanmin(sza)), 3), "solar_zenith_max": round(float(np.nanmax(sza)), 3),
               **{f"{b}_median_reflectance": median(refl[b][::4, ::4]) for b in bands}}
    with atomic_dir(out_dir) as tmp:
        save_npy(tmp / "false_color.npy", image)
        save_npy(tmp / "valid.npy", valid.view(np.uint8))
        if save_reflectance:
            save_npy(tmp / "reflectance.npy", np.stack([refl[b] for b in bands]))
        write_text(tmp / "false_color.json", json.dumps(figures, indent=2, sort_keys=True))
    return StageResult(out_dir, figures, preview=image)


def make_tiles(false_color_dir: Path, masks_dir: Path, out_dir: Path, *, product: str,
               tile_size: int = DEFAULT_TILE_SIZE) -> StageResult:
    """Slice the scene into tiles → ``images.npy``, ``masks.npy``, ``index.csv``.

    A pixel counts as valid when the masks stage's ``valid`` flag is set (filled, day, solar
    zenith within the limit) and the false-colour stage's ``valid.npy`` says its reflectance is
    finite in every band.

    Raises
    ------
    SettingError
        ``tile_size`` is not a positive multiple of 4 or larger than the scene.
    ProductError
        No pixel of the scene is valid, or the false-colour output lacks ``valid.npy`` (written
        by an older version: materialize false_color again). Nothing is written.
    """
    check_tile_size(tile_size)
    require_inputs(false_color=false_color_dir, masks=masks_dir)
    image = np.load(false_color_dir / "false_color.npy", mmap_mode="r")
    flags = np.load(masks_dir / "flags.npy", mmap_mode="r")
    valid_path = false_color_dir / "valid.npy"
    if not valid_path.is_file():
        raise ProductError(false_color_dir, "valid.npy is missing (false colour written by an older version); "
                                            "materialize false_color again")
    visible = np.load(valid_path).astype(bool)
    if visible.shape != flags.shape:
        raise ProductError(false_color_dir, f"valid.npy is {visible.shape} but the masks are {flags.shape}; "
                                            "materialize masks and false_color again")
    tiles = slice_tiles(image, flags, product, tile_size, valid=visible)
    if not np.any(((flags & PIXEL_FLAG_BITS["valid"]) != 0) & visible):
        unfilled, day, sza_ok = ((flags & PIXEL_FLAG_BITS[name]) != 0 for name in ("unfilled", "day", "sza_ok"))
        raise ProductError(false_color_dir, f"no valid visible pixel in {product}: 0 of {flags.size} pixels are valid "
                                            f"(unfilled: {np.count_nonzero(unfilled)}, day bit unset: "
                                            f"{np.count_nonzero(~day)}, solar zenith above the limit: "
                                            f"{np.count_nonzero(~sza_ok)}, no finite reflectance: "
                                            f"{np.count_nonzero(~visible)})")
    with atomic_dir(out_dir) as tmp:
        write_tiles(tmp, tiles)
    n = len(tiles)
    figures = {"tiles": n, "tile_size": tile_size,
               "mean_cloud_fraction": round(float(np.mean([r["cloud_fraction"] for r in tiles.index])), 4) if n else 0.0,
               "mean_valid_fraction": round(float(np.mean([r["valid_fraction"] for r in tiles.index])), 4) if n else 0.0}
    return StageResult(out_dir, figures)


def sort_product_tiles(tiles_dir: Path, out_dir: Path, *, edges: Sequence[float] = DEFAULT_BIN_EDGES,
                       gan_range: tuple[float, float] = (10.0, 95.0), min_valid_fraction: float = 0.9) -> StageResult:
    """Sort tiles into cover bins; write the full ``index.csv`` and two groups, ``surface/`` (clear
    surface candidates) and ``gan_input/`` (the masks the generator will turn into clouds).

    Raises
    ------
    SettingError
        A setting outside its range (see :func:`cloudgan_core.tiles.sort_tiles`), before any tile is read.
    """
    edges = check_bin_edges(edges)
    gan_range = check_cover_range(*gan_range, what="gan cover range")
    check_fraction("min_valid_fraction", min_valid_fraction)
    require_inputs(tiles=tiles_dir)
    tiles = sort_tiles(read_tiles(tiles_dir), edges=edges, gan_range=gan_range, min_valid_fraction=min_valid_fraction)
    with atomic_dir(out_dir) as tmp:
        write_tiles(tmp, Tiles(tiles.images[:0], tiles.masks[:0], tiles.index))
        (tmp / "images.npy").unlink()
        (tmp / "masks.npy").unlink()
        for group, key in (("surface", "surface_candidate"), ("gan_input", "gan_input")):
            rows = [i for i, r in enumerate(tiles.index) if r[key]]
            write_tiles(tmp / group, tiles.take(rows))
    counts = bin_counts(tiles.index, edges)
    figures = {"tiles": len(tiles), **{f"bin_{k}": v for k, v in counts.items()},
               "surface_candidates": sum(r["surface_candidate"] for r in tiles.index),
               "gan_inputs": sum(r["gan_input"] for r in tiles.index)}
    return StageResult(out_dir, figures)
