"""The dataset stages as plain functions over folders: surface pool, composites, training set, report.

Each stage reads the folders the previous stages wrote and writes its own (swapped in whole, see
:func:`cloudgan_core.atomic.atomic_dir`); it returns a :class:`DatasetResult` with the figures a user
wants to see and a preview image. The Dagster assets of ``cloudgan_assets.assets.dataset`` call
these; so can a notebook or a script. The checks' loaders and the composite-specific checks are
here too (the generic checks are in :mod:`cloudgan_core.validation`).

Folder layout (under a storage root; ``<key>`` is a product id)::

    sorted_tiles/<key>/surface/     clear surface candidates of a product (input)
    synthetic_clouds/<key>/         clouds.npy, masks.npy, index.csv, clouds.json (input)
    surface_tiles/                  images.npy + index.csv          (build_surface_pool)
    composites/<key>/               images/masks/clouds/surfaces.npy, index.csv, composites.json
                                                                    (composite_product)
    training_set/                   see cloudgan_core.export        (build_training_set)
    quality_report/                 report.json + report.png        (build_quality_report)

Arrays: images ``uint8 (N, H, W, 3)`` in digital numbers 0..255, masks ``uint8 (N, H, W)`` with
1 = cloud, 0 = clear.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cloudgan_core.atomic import atomic_dir, require_inputs, save_npy, write_bytes, write_text
from cloudgan_core.composite import BLENDS, assign_surfaces, cloud_opacity, composite, mean_rgb
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import (SPLITS, ZIP_NAME, TrainingPair, pair_file_index, read_training_set,
                                  read_training_sources, select_pairs, split_by_product, write_training_set)
from cloudgan_core.preview import grid
from cloudgan_core.quality import quality_report, report_plot_png
from cloudgan_core.stages import StageResult
from cloudgan_core.stages.tiles import read_group, read_index
from cloudgan_core.tiles import DEFAULT_TILE_SIZE, check_tile_size

#: A surface tile with more than this share of land pixels counts as land, otherwise as ocean.
LAND_SHARE = 0.5
#: Image files read from ``extra_surface_dir``.
USER_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Product name of surface tiles from the user folder (never equal to a Sentinel-3 product id).
USER_PRODUCT = "user"
#: Columns of ``surface_tiles/index.csv`` and ``composites/<key>/index.csv``.
SURFACE_COLUMNS = ("surface", "source", "product", "row", "col", "land_fraction", "mean_brightness")
COMPOSITE_COLUMNS = ("tile", "product", "row", "col", "cloud_fraction", "surface", "surface_source",
                     "surface_product", "mean_opacity", "brightness_change_inside")
#: The arrays of a composites folder, one ``<name>.npy`` each, aligned tile by tile.
COMPOSITE_ARRAYS = ("images", "masks", "clouds", "surfaces")
#: Rows (pairs) in the composite and training-set previews; tiles in the surface-pool preview.
PREVIEW_ROWS = 4
POOL_PREVIEW_TILES = 12


@dataclass
class DatasetResult(StageResult):
    """A :class:`~cloudgan_core.stages.StageResult` with what the dataset stages add.

    Attributes
    ----------
    caption
        What :attr:`preview` shows (empty when there is no preview).
    details
        Structured results (JSON types or paths) beside the scalar :attr:`figures`.
    """

    caption: str = ""
    details: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- small helpers


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV text with a header of ``columns`` (other keys ignored, ``\\n`` line ends)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, values as strings; a missing file is a :class:`CloudGANError`."""
    path = Path(path)
    if not path.is_file():
        raise CloudGANError(f"{path}: missing")
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def derived_seed(seed: int, key: str) -> int:
    """A per-partition seed: the first 8 bytes of ``sha256("<seed>:<key>")`` as a big-endian integer."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table: one header row, then ``rows`` (cells through ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cover_histogram_markdown(histogram: Mapping[str, Sequence]) -> str:
    """A cover histogram (``edges`` 0..1, ``counts``) as a Markdown table of percent ranges and pairs."""
    edges, counts = histogram["edges"], histogram["counts"]
    rows = []
    for k, c in enumerate(counts):
        close = "]" if k == len(counts) - 1 else ")"
        rows.append((f"[{edges[k] * 100:.0f} %, {edges[k + 1] * 100:.0f} %{close}", c))
    return markdown_table(("cloud cover", "pairs"), rows)


def quality_table_markdown(report: Mapping[str, Any]) -> str:
    """The main figures of a quality report, alpha composite vs original blend, as a Markdown table."""
    a, o = report["alpha"], report["original"]
    return markdown_table(
        ("figure", "alpha composite", "original 50 % blend"),
        [("detector IoU (set Otsu)", f"{a['detector_iou']:.3f}", f"{o['detector_iou']:.3f}"),
         ("detector IoU (per-tile Otsu)", f"{a['detector_iou_per_tile']:.3f}", f"{o['detector_iou_per_tile']:.3f}"),
         ("Otsu threshold (DN)", f"{a['threshold']:.1f}", f"{o['threshold']:.1f}"),
         ("brightness change inside mask (DN)", f"{a['brightness_inside']:+.1f}", f"{o['brightness_inside']:+.1f}"),
         ("brightness change outside mask (DN)", f"{a['brightness_outside']:+.1f}",
          f"{o['brightness_outside']:+.1f}"),
         ("mean abs change outside mask (DN)", f"{a['brightness_outside_abs']:.2f}",
          f"{o['brightness_outside_abs']:.2f}")])


# --------------------------------------------------------------------------- surface pool


def user_surface_tiles(folder: str | Path, size: int) -> tuple[list[np.ndarray], list[dict], int]:
    """Cut the images of a user folder into non-overlapping ``size`` x ``size`` tiles.

    Every ``.png/.jpg/.jpeg/.tif/.tiff`` file (8-bit RGB, RGBA, greyscale or palette) is read in
    name order and cut from its top-left corner; the ragged remainder is dropped and all-black
    tiles are skipped.

    Parameters
    ----------
    folder
        Folder of cloud-free images.
    size
        Tile side, pixels.

    Returns
    -------
    tiles
        ``uint8 (size, size, 3)`` tiles.
    rows
        One index row per tile: ``source`` (``user:<file>:<row>:<col>``), ``product`` (``"user"``),
        ``row``, ``col`` (pixels) and an empty ``land_fraction``.
    skipped
        Number of all-black tiles left out.

    Raises
    ------
    CloudGANError
        The folder is missing or holds no image, or an image is unreadable, not 8 bit, or smaller
        than one tile (the message names the file).
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise CloudGANError(f"{folder}: extra_surface_dir is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in USER_IMAGE_SUFFIXES)
    if not files:
        raise CloudGANError(f"{folder}: no images ({', '.join(USER_IMAGE_SUFFIXES)}) in extra_surface_dir")
    tiles, rows, skipped = [], [], 0
    for path in files:
        try:
            with Image.open(path) as im:
                if im.mode not in ("RGB", "RGBA", "L", "P"):
                    raise CloudGANError(f"{path}: image mode {im.mode} is not 8-bit RGB/greyscale; "
                                        "save it as an 8-bit RGB image")
                arr = np.asarray(im.convert("RGB"))
        except CloudGANError:
            raise
        except Exception as exc:  # PIL raises many kinds for unreadable files
            raise CloudGANError(f"{path}: cannot read as an image ({exc})") from None
        h, w = arr.shape[:2]
        if h < size or w < size:
            raise CloudGANError(f"{path}: image is {h} x {w} px, smaller than one {size} x {size} tile")
        for r in range(0, h - size + 1, size):
            for c in range(0, w - size + 1, size):
                tile = np.ascontiguousarray(arr[r:r + size, c:c + size])
                if not tile.any():
                    skipped += 1
                    continue
                tiles.append(tile)
                rows.append({"source": f"{USER_PRODUCT}:{path.name}:{r}:{c}", "product": USER_PRODUCT,
                             "row": r, "col": c, "land_fraction": ""})
    return tiles, rows, skipped


def build_surface_pool(sorted_dirs: Mapping[str, str | Path], out_dir: str | Path, *,
                       extra_surface_dir: str | Path | None = None,
                       tile_size: int | None = None) -> DatasetResult:
    """Pool the clear surface tiles of every product (plus a user folder) → ``images.npy`` + ``index.csv``.

    Parameters
    ----------
    sorted_dirs
        Product id → its ``sorted_tiles`` folder (the tiles of ``<folder>/surface`` are pooled),
        taken in the mapping's order.
    out_dir
        The pool folder (replaced whole).
    extra_surface_dir
        Optional folder of cloud-free images cut into tiles by :func:`user_surface_tiles`
        (product ``"user"``).
    tile_size
        Tile side, pixels; default: that of the sorted tiles (:data:`DEFAULT_TILE_SIZE` when there
        are none). Must match the sorted tiles when both are present.

    Returns
    -------
    DatasetResult
        ``figures``: count, land, ocean (land share above / at most :data:`LAND_SHARE`; user tiles
        are neither), user, user_tiles_skipped_black (None without a user folder), products,
        tile_size. ``details["per_product"]``: tiles per product. ``preview``: the first
        :data:`POOL_PREVIEW_TILES` tiles. ``notes``: a warning when the pool is empty.

    Raises
    ------
    CloudGANError
        Products differ in tile size (or from ``tile_size``), or the user folder is unusable.
    """
    require_inputs(sorted_tiles=sorted_dirs.values())
    images: list[np.ndarray] = []
    rows: list[dict] = []
    size = check_tile_size(tile_size) if tile_size else None
    size_from = "config" if size else None
    per_product: dict[str, int] = {}
    for key, folder in sorted_dirs.items():
        t = read_group(Path(folder) / "surface")
        if len(t) == 0:
            per_product[key] = 0
            continue
        side = int(t.images.shape[1])
        if size is None:
            size, size_from = side, key
        elif side != size:
            raise CloudGANError(f"sorted_tiles/{key}/surface has {side} px tiles but {size_from} has {size} px; "
                                "re-materialize tiles and sorted_tiles with one tile size")
        per_product[key] = len(t)
        for i, r in enumerate(t.index):
            images.append(np.asarray(t.images[i]))
            rows.append({"source": f"{key}:{r['row']}:{r['col']}", "product": key, "row": r["row"],
                         "col": r["col"], "land_fraction": r["land_fraction"]})
    size = size or DEFAULT_TILE_SIZE
    n_user, skipped = 0, 0
    if extra_surface_dir:
        user_tiles, user_rows, skipped = user_surface_tiles(extra_surface_dir, size)
        images += user_tiles
        rows += user_rows
        n_user = len(user_tiles)
    stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    brightness = mean_rgb(stack).reshape(len(stack), -1).mean(axis=1) if len(stack) else np.zeros(0)
    for i, row in enumerate(rows):
        row["surface"] = i
        row["mean_brightness"] = round(float(brightness[i]), 3)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        save_npy(tmp / "images.npy", stack)
        write_text(tmp / "index.csv", csv_text(rows, SURFACE_COLUMNS))
    land = sum(1 for r in rows if r["land_fraction"] != "" and float(r["land_fraction"]) > LAND_SHARE)
    ocean = sum(1 for r in rows if r["land_fraction"] != "" and float(r["land_fraction"]) <= LAND_SHARE)
    result = DatasetResult(out, {"count": len(rows), "land": land, "ocean": ocean, "user": n_user,
                                 "user_tiles_skipped_black": skipped if extra_surface_dir else None,
                                 "products": len(sorted_dirs), "tile_size": size},
                           details={"per_product": per_product})
    if rows:
        cells = [stack[i] for i in range(min(len(stack), POOL_PREVIEW_TILES))]
        result.preview = grid([cells[k:k + 6] for k in range(0, len(cells), 6)], 80)
        result.caption = f"surface pool: first {len(cells)} of {len(rows)} tiles"
    else:
        result.notes.append("the surface pool is empty: no product has a clear surface tile and no "
                            "extra_surface_dir is set; composites cannot be made")
    return result


def load_surface_pool(folder: str | Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    """The pool written by :func:`build_surface_pool`: tiles (memory-mapped) and index rows (strings)."""
    folder = Path(folder)
    if not (folder / "images.npy").is_file():
        raise CloudGANError(f"{folder}: no surface pool; materialize surface_tiles first")
    rows = read_csv_rows(folder / "index.csv")
    images = np.load(folder / "images.npy", mmap_mode="r")
    if len(rows) != len(images):
        raise CloudGANError(f"{folder}: index.csv has {len(rows)} rows for {len(images)} tiles")
    return images, rows


# --------------------------------------------------------------------------- composites


def load_clouds(folder: str | Path, key: str) -> tuple[np.ndarray, np.ndarray, list[dict], dict]:
    """Read and validate a ``synthetic_clouds/<key>`` folder.

    Returns
    -------
    clouds, masks, index, info
        ``uint8 (N, H, W, 3)`` clouds, ``uint8 (N, H, W)`` 0/1 masks, the index rows (one per
        tile) and ``clouds.json`` (with ``model_sha256``).

    Raises
    ------
    CloudGANError
        A file is missing, shapes or counts disagree, a mask value is not 0/1, or ``clouds.json``
        does not name the generator.
    """
    folder = Path(folder)
    for name in ("clouds.npy", "masks.npy", "index.csv", "clouds.json"):
        if not (folder / name).is_file():
            raise CloudGANError(f"{folder / name}: missing; materialize synthetic_clouds for {key} first")
    clouds = np.load(folder / "clouds.npy")
    masks = np.load(folder / "masks.npy")
    index = read_index(folder / "index.csv")
    info = json.loads((folder / "clouds.json").read_text(encoding="utf-8"))
    if clouds.dtype != np.uint8 or clouds.ndim != 4 or clouds.shape[-1] != 3:
        raise CloudGANError(f"{folder / 'clouds.npy'}: expected uint8 (N, H, W, 3), got {clouds.dtype} {clouds.shape}")
    if masks.shape != clouds.shape[:3]:
        raise CloudGANError(f"{folder / 'masks.npy'}: shape {masks.shape} does not match the clouds' "
                            f"{clouds.shape[:3]}")
    if len(index) != len(clouds):
        raise CloudGANError(f"{folder / 'index.csv'}: {len(index)} rows for {len(clouds)} cloud tiles")
    if ((masks != 0) & (masks != 1)).any():
        raise CloudGANError(f"{folder / 'masks.npy'}: mask values must be 0 or 1")
    if "model_sha256" not in info:
        raise CloudGANError(f"{folder / 'clouds.json'}: no model_sha256 (which generator made these clouds?)")
    return clouds, masks.astype(np.uint8), index, info


def composite_product(clouds_dir: str | Path, pool_dir: str | Path, out_dir: str | Path, *, key: str,
                      blend: str = "alpha", min_opacity: float = 0.35, max_opacity: float = 1.0,
                      gamma: float = 1.0, whiten: float = 0.5, seed: int = 0,
                      prefer_other_product: bool = True) -> DatasetResult:
    """Lay one product's generated clouds over surfaces of the pool.

    Writes ``images.npy`` (composites), ``masks.npy``, ``clouds.npy``, ``surfaces.npy`` (all
    aligned tile by tile), ``index.csv`` (:data:`COMPOSITE_COLUMNS`) and ``composites.json``
    (settings and figures). With ``blend="alpha"`` every clear pixel equals its surface.

    Parameters
    ----------
    clouds_dir
        The product's ``synthetic_clouds`` folder (see :func:`load_clouds`).
    pool_dir
        The ``surface_tiles`` folder (see :func:`build_surface_pool`).
    out_dir
        The product's ``composites`` folder (replaced whole).
    key
        Product id (names the product in messages, default product of index rows, seeds).
    blend, min_opacity, max_opacity, gamma, whiten
        See :func:`cloudgan_core.composite.composite` (opacities 0..1).
    seed
        Pipeline seed; surfaces are assigned with :func:`derived_seed` ``(seed, key)``.
    prefer_other_product
        Prefer a surface from another product than the cloud's while unused ones are left.

    Returns
    -------
    DatasetResult
        ``figures``: count, blend, mean_opacity, mean_brightness_change_inside (DN),
        mean_brightness (DN), surface_pool, surfaces_used, model_sha256. ``details["summary"]``:
        the contents of ``composites.json``. ``preview``: mask | cloud | surface | composite rows.

    Raises
    ------
    CloudGANError
        Unknown blend, unreadable inputs, an empty pool for a product with clouds, or tile sizes
        that differ between pool and clouds.
    """
    require_inputs(synthetic_clouds=clouds_dir, surface_tiles=pool_dir)
    if blend not in BLENDS:
        raise CloudGANError(f"blend must be one of {BLENDS}, got {blend!r}")
    clouds, masks, index, info = load_clouds(clouds_dir, key)
    n = len(clouds)
    pool, pool_rows = load_surface_pool(pool_dir)
    if n and not len(pool):
        raise CloudGANError(f"surface pool {Path(pool_dir)} is empty: no cloud-free surface tile to "
                            f"place the {n} cloud tile(s) of {key} on (materialize products with clear tiles, "
                            "set surface_tiles' extra_surface_dir, then re-materialize surface_tiles)")
    if n and pool.shape[1:3] != clouds.shape[1:3]:
        raise CloudGANError(f"surface tiles are {pool.shape[1]} px but the clouds of {key} are {clouds.shape[1]} px; "
                            "materialize both with one tile size")
    assignment_seed = derived_seed(seed, key)
    products = [str(r.get("product", key)) for r in index]
    pick = assign_surfaces(products, [r["product"] for r in pool_rows], seed=assignment_seed,
                           prefer_other_product=prefer_other_product)
    size = clouds.shape[1:3]
    surfaces = np.asarray(pool[pick]) if n else np.zeros((0, *size, 3), np.uint8)
    settings = {"min_opacity": min_opacity, "max_opacity": max_opacity, "gamma": gamma, "whiten": whiten}
    images = composite(surfaces, clouds, masks, blend=blend, **settings) if n else surfaces.copy()
    fractions = masks.reshape(n, -1).mean(axis=1) if n else np.zeros(0)
    cloudy = masks.astype(bool)
    if blend == "alpha" and n:
        alpha = cloud_opacity(clouds, masks, min_opacity=min_opacity, max_opacity=max_opacity, gamma=gamma)
    else:
        alpha = np.where(cloudy, np.float32(0.5), np.float32(0.0)) if n else np.zeros((0, *size), np.float32)
    change = mean_rgb(images) - mean_rgb(surfaces) if n else np.zeros((0, *size), np.float32)
    rows = []
    for i in range(n):
        m = cloudy[i]
        rows.append({"tile": i, "product": products[i], "row": index[i].get("row", ""),
                     "col": index[i].get("col", ""), "cloud_fraction": round(float(fractions[i]), 6),
                     "surface": int(pick[i]), "surface_source": pool_rows[pick[i]]["source"],
                     "surface_product": pool_rows[pick[i]]["product"],
                     "mean_opacity": round(float(alpha[i][m].mean()), 4) if m.any() else 0.0,
                     "brightness_change_inside": round(float(change[i][m].mean()), 3) if m.any() else 0.0})
    mean_opacity = float(alpha[cloudy].mean()) if cloudy.any() else 0.0
    change_inside = float(change[cloudy].mean()) if cloudy.any() else 0.0
    mean_brightness = float(mean_rgb(images).mean()) if n else 0.0
    summary = {"product": key, "count": n, "blend": blend, **settings, "seed": seed,
               "assignment_seed": assignment_seed, "prefer_other_product": prefer_other_product,
               "surface_pool": len(pool_rows), "surfaces_used": int(np.unique(pick).size),
               "model_sha256": info["model_sha256"], "model": info.get("model"), "clouds_seed": info.get("seed"),
               "mean_opacity": round(mean_opacity, 6), "mean_brightness_change_inside": round(change_inside, 4),
               "mean_brightness": round(mean_brightness, 4)}
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        save_npy(tmp / "images.npy", images)
        save_npy(tmp / "masks.npy", masks)
        save_npy(tmp / "clouds.npy", clouds)
        save_npy(tmp / "surfaces.npy", surfaces)
        write_text(tmp / "index.csv", csv_text(rows, COMPOSITE_COLUMNS))
        write_text(tmp / "composites.json", json.dumps(summary, indent=2, sort_keys=True))
    result = DatasetResult(out, {"count": n, "blend": blend, "mean_opacity": mean_opacity,
                                 "mean_brightness_change_inside": change_inside, "mean_brightness": mean_brightness,
                                 "surface_pool": len(pool_rows), "surfaces_used": summary["surfaces_used"],
                                 "model_sha256": info["model_sha256"]},
                           details={"summary": summary})
    if n:
        result.preview = grid([[masks[i], clouds[i], surfaces[i], images[i]] for i in range(min(n, PREVIEW_ROWS))],
                              96)
        result.caption = "mask | cloud | surface | composite"
    return result


def load_composite_partition(folder: str | Path) -> tuple[dict, list[dict[str, str]], dict[str, np.ndarray]]:
    """A composites folder for export: ``composites.json``, index rows (strings), memory-mapped arrays.

    Raises
    ------
    CloudGANError
        An array's tile count differs from the index (or the index is missing).
    """
    folder = Path(folder)
    summary = json.loads((folder / "composites.json").read_text(encoding="utf-8"))
    rows = read_csv_rows(folder / "index.csv")
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in COMPOSITE_ARRAYS}
    for name, arr in arrays.items():
        if len(arr) != len(rows):
            raise CloudGANError(f"{folder / (name + '.npy')}: {len(arr)} tiles but index.csv has {len(rows)} rows")
    return summary, rows, arrays


def load_composites(folder: str | Path) -> dict[str, Any]:
    """The four arrays of a composites folder (read whole) plus ``index`` (rows as strings), for checks.

    Raises
    ------
    CloudGANError
        A file is missing (the message names it and the product, the folder's name).
    """
    folder = Path(folder)
    out: dict[str, Any] = {}
    for name in COMPOSITE_ARRAYS:
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise CloudGANError(f"{path}: missing; materialize composites for {folder.name}")
        out[name] = np.load(path)
    index = folder / "index.csv"
    if not index.is_file():
        raise CloudGANError(f"{index}: missing; materialize composites for {folder.name}")
    with open(index, newline="", encoding="utf-8") as fh:
        out["index"] = list(csv.DictReader(fh))
    return out


# --------------------------------------------------------------------------- training set


def _shared_value(values: Mapping[str, object], what: str) -> object:
    """The single value shared by all partitions, or a clear error listing who has which."""
    distinct = sorted({json.dumps(v, sort_keys=True) for v in values.values()})
    if len(distinct) > 1:
        by: dict[str, list[str]] = {}
        for key, v in values.items():
            by.setdefault(json.dumps(v, sort_keys=True), []).append(key)
        listing = "; ".join(f"{v}: {', '.join(ks)}" for v, ks in sorted(by.items()))
        raise CloudGANError(f"composite partitions differ in {what} ({listing}); re-materialize the stale "
                            "partitions so one training set comes from one setting")
    return json.loads(distinct[0]) if distinct else None


def build_training_set(composite_dirs: Mapping[str, str | Path], out_dir: str | Path, *,
                       max_pairs: int | None = None, min_cover: float = 0.0, max_cover: float = 1.0,
                       balanced: bool = False, cover_bins: int = 10, train_fraction: float = 0.8,
                       val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> DatasetResult:
    """Select pairs from all composite partitions, split them by product, write the training set.

    See :func:`cloudgan_core.export.write_training_set` for the layout; the set is deterministic
    (same composites and settings give the same ``training_set.zip`` bytes) and replaced atomically.

    Parameters
    ----------
    composite_dirs
        Product id → its ``composites`` folder (taken in product-id order).
    out_dir
        The training-set folder.
    max_pairs
        At most this many pairs (None: no limit).
    min_cover, max_cover
        Keep pairs whose cloud fraction (0..1) lies in this range.
    balanced, cover_bins
        Take the same number of pairs from each of ``cover_bins`` equal-width cover bins.
    train_fraction, val_fraction, test_fraction
        Shares of products per split (no product is in two splits).
    seed
        Seed of the selection and the split (recorded in the manifest).

    Returns
    -------
    DatasetResult
        ``figures``: count, candidates, partitions, zip_sha256, model_sha256, blend and
        ``<split>_pairs``. ``details``: zip_path, split_products, cover_histogram (``edges``,
        ``counts``). ``preview``: the first pairs. ``notes``: a warning when the set is empty.

    Raises
    ------
    CloudGANError
        Non-empty partitions differ in generator model, blend or composite settings, or a
        partition is unreadable.
    """
    require_inputs(composites=composite_dirs.values())
    keys = sorted(composite_dirs)
    parts = {k: load_composite_partition(composite_dirs[k]) for k in keys}
    nonempty = {k: p for k, p in parts.items() if p[1]}
    model_sha = _shared_value({k: p[0]["model_sha256"] for k, p in nonempty.items()},
                              "generator model (model_sha256)")
    blend = _shared_value({k: p[0]["blend"] for k, p in nonempty.items()}, "blend")
    settings = _shared_value({k: {s: p[0][s] for s in ("min_opacity", "max_opacity", "gamma", "whiten", "seed")}
                              for k, p in nonempty.items()}, "composite settings")
    candidates = [(k, i) for k in keys for i in range(len(parts[k][1]))]
    fractions = np.array([float(parts[k][1][i]["cloud_fraction"]) for k, i in candidates], dtype=np.float64)
    chosen = select_pairs(fractions, cover_bins, max_pairs=max_pairs, cover_range=(min_cover, max_cover),
                          balanced=balanced, seed=seed)
    picked = [candidates[j] for j in chosen.tolist()]
    split = split_by_product(sorted({k for k, _ in picked}), fractions=(train_fraction, val_fraction, test_fraction),
                             seed=seed)

    def pairs() -> Iterator[TrainingPair]:
        for k, i in picked:
            _, rows, arr = parts[k]
            r = rows[i]
            yield TrainingPair(image=np.asarray(arr["images"][i]), mask=np.asarray(arr["masks"][i]),
                               cloud=np.asarray(arr["clouds"][i]), surface=np.asarray(arr["surfaces"][i]),
                               product=r["product"], row=int(r["row"]), col=int(r["col"]),
                               cloud_fraction=float(r["cloud_fraction"]), surface_source=r["surface_source"],
                               split=split[k])

    card = {"composite settings": settings, "selection": {
        "max_pairs": max_pairs, "cover_range": [min_cover, max_cover], "balanced": balanced, "cover_bins": cover_bins,
        "split_fractions": [train_fraction, val_fraction, test_fraction]},
        "candidates": len(candidates), "generator seeds": {k: p[0].get("clouds_seed") for k, p in nonempty.items()}}
    dest = Path(out_dir)
    summary = write_training_set(dest, pairs(), model_sha256=str(model_sha or ""), seed=seed, blend=str(blend or ""),
                                 extra_card=card)
    result = DatasetResult(dest, {"count": summary.count, "candidates": len(candidates), "partitions": len(keys),
                                  "zip_sha256": summary.zip_sha256, "model_sha256": model_sha, "blend": blend,
                                  **{f"{s}_pairs": summary.split_counts[s] for s in SPLITS}},
                           details={"zip_path": summary.zip_path, "split_products": summary.split_products,
                                    "cover_histogram": summary.histogram})
    if picked:
        rows = []
        for k, i in picked[:PREVIEW_ROWS]:
            arr = parts[k][2]
            rows.append([arr["masks"][i], arr["clouds"][i], arr["surfaces"][i], arr["images"][i]])
        result.preview = grid(rows, 96)
        result.caption = "mask | cloud | surface | composite (first pairs)"
    else:
        result.notes.append("the training set is empty: no composite pair in the cover range")
    return result


def load_training_pngs(dest: str | Path) -> tuple[dict[str, list[int]], list[np.ndarray], list[np.ndarray]]:
    """The pair numbers of a training set (see :func:`cloudgan_core.export.pair_file_index`) and its
    ``images/`` and ``masks/`` PNGs as arrays (as stored, no conversion), for the alignment check.

    Raises
    ------
    CloudGANError, OSError
        The set or one of its files is missing or unreadable.
    """
    from PIL import Image

    def png(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im)

    dest = Path(dest)
    numbers = pair_file_index(dest)
    images = [png(dest / "images" / f"{k:05d}.png") for k in numbers["images"]]
    masks = [png(dest / "masks" / f"{k:05d}.png") for k in numbers["masks"]]
    return numbers, images, masks


# --------------------------------------------------------------------------- quality report


def build_quality_report(training_set_dir: str | Path, out_dir: str | Path) -> DatasetResult:
    """Quality figures of a training set → ``report.json`` + ``report.png``.

    Detector IoU (brightness threshold vs mask) and brightness change inside/outside the mask
    (digital numbers) for the set's composites and for the original 50 % blend of the same clouds
    and surfaces (see :func:`cloudgan_core.quality.quality_report`), plus the cover histogram and
    the SHA-256 of ``training_set.zip``.

    Returns
    -------
    DatasetResult
        ``figures``: pairs, alpha/original detector IoU, iou_gain, iou_gain_per_tile, alpha/original
        mean absolute brightness change outside the mask. ``details["report"]``: the report.
        ``preview``: the plot. ``notes``: a warning when the alpha composite does not beat the
        original blend on detector IoU.
    """
    require_inputs(training_set=training_set_dir)
    from PIL import Image

    dest = Path(training_set_dir)
    images, masks, rows = read_training_set(dest)
    clouds, surfaces = read_training_sources(dest)
    fractions = np.array([float(r["cloud_fraction"]) for r in rows], dtype=np.float64)
    report = quality_report(images, surfaces, clouds, masks, cloud_fractions=fractions)
    report["zip_sha256"] = hashlib.sha256((dest / ZIP_NAME).read_bytes()).hexdigest()
    png = report_plot_png(report)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        write_text(tmp / "report.json", json.dumps(report, indent=2, sort_keys=True))
        write_bytes(tmp / "report.png", png)
    a, o = report["alpha"], report["original"]
    result = DatasetResult(out, {"pairs": report["n_pairs"], "alpha_detector_iou": a["detector_iou"],
                                 "original_detector_iou": o["detector_iou"], "iou_gain": report["iou_gain"],
                                 "iou_gain_per_tile": report["iou_gain_per_tile"],
                                 "alpha_brightness_outside_abs": a["brightness_outside_abs"],
                                 "original_brightness_outside_abs": o["brightness_outside_abs"]},
                           preview=np.asarray(Image.open(io.BytesIO(png)).convert("RGB")),
                           caption="detector IoU, brightness change, cover histogram", details={"report": report})
    if report["iou_gain"] <= 0:
        result.notes.append(f"the alpha composite does not beat the original blend on detector IoU "
                            f"({a['detector_iou']:.3f} vs {o['detector_iou']:.3f})")
    return result
