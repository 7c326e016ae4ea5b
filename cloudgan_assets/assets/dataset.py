"""Dataset assets: the surface pool, the mask-exact composites, the training set and its quality report.

Every asset writes its own files under the storage root (``<root>/<asset>[/<partition>]``) and
returns their paths and figures as materialization metadata; the heavy lifting is in
:mod:`cloudgan_core.composite`, :mod:`cloudgan_core.export` and :mod:`cloudgan_core.quality`.
"""

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Optional

import dagster as dg
import numpy as np
from PIL import Image
from pydantic import Field

from cloudgan_assets.metadata import figures, preview
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.atomic import atomic_dir, save_npy, write_bytes, write_text
from cloudgan_core.composite import BLENDS, assign_surfaces, cloud_opacity, composite, mean_rgb
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import (SPLITS, TrainingPair, read_training_set, read_training_sources, select_pairs,
                                  split_by_product, write_training_set)
from cloudgan_core.preview import grid
from cloudgan_core.quality import quality_report as compute_quality_report
from cloudgan_core.quality import report_plot_png
from cloudgan_core.tiles import DEFAULT_TILE_SIZE, check_tile_size, read_index, read_tiles

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
PREVIEW_ROWS = 4


# --------------------------------------------------------------------------- small helpers


def _csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise CloudGANError(f"{path}: missing")
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _partitions_with(context, storage: CloudGANStorage, asset: str, marker: str) -> list[str]:
    """Product partitions (known to the instance) whose ``<asset>/<key>/<marker>`` exists, sorted."""
    keys = context.instance.get_dynamic_partitions(products_partitions.name)
    return sorted(k for k in keys if (storage.path(asset, k) / marker).exists())


def _md_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _histogram_md(histogram: dict) -> str:
    edges, counts = histogram["edges"], histogram["counts"]
    rows = []
    for k, c in enumerate(counts):
        close = "]" if k == len(counts) - 1 else ")"
        rows.append((f"[{edges[k] * 100:.0f} %, {edges[k + 1] * 100:.0f} %{close}", c))
    return _md_table(("cloud cover", "pairs"), rows)


def derived_seed(seed: int, key: str) -> int:
    """A per-partition seed: the first 8 bytes of ``sha256("<seed>:<key>")`` as an integer."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


# --------------------------------------------------------------------------- surface_tiles


class SurfaceTilesConfig(dg.Config):
    extra_surface_dir: Optional[str] = Field(
        None, description="optional folder of cloud-free RGB images (png/jpg/tif, 8 bit); each is cut into "
                          "non-overlapping tiles of the tile size (the ragged remainder is dropped, all-black "
                          "tiles skipped) and added to the pool as product 'user'")
    tile_size: Optional[int] = Field(
        None, description="tile side in pixels; default: that of the sorted tiles (256 when there are none). "
                          "Must match the sorted tiles when both are present.")


def _user_tiles(folder: Path, size: int) -> tuple[list[np.ndarray], list[dict], int]:
    """Cut the images of a user folder into ``size`` tiles; returns tiles, index rows, skipped count."""
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


@dg.asset(group_name="dataset", deps=["sorted_tiles"], kinds={"numpy"},
          description="The pool of cloud-free surface tiles: the clear surface candidates of every materialized "
                      "product (fully valid, daytime, 0 % cloud, no snow/ice), plus optionally a user folder of "
                      "cloud-free images. images.npy + index.csv (source, product, row, col, land_fraction).")
def surface_tiles(context: dg.AssetExecutionContext, config: SurfaceTilesConfig,
                  storage: CloudGANStorage) -> dg.MaterializeResult:
    keys = _partitions_with(context, storage, "sorted_tiles", "surface/index.csv")
    images: list[np.ndarray] = []
    rows: list[dict] = []
    size = check_tile_size(config.tile_size) if config.tile_size else None
    size_from = "config" if size else None
    per_product: dict[str, int] = {}
    for key in keys:
        t = read_tiles(storage.path("sorted_tiles", key) / "surface")
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
    if config.extra_surface_dir:
        user_tiles, user_rows, skipped = _user_tiles(Path(config.extra_surface_dir), size)
        images += user_tiles
        rows += user_rows
        n_user = len(user_tiles)
    stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    brightness = mean_rgb(stack).reshape(len(stack), -1).mean(axis=1) if len(stack) else np.zeros(0)
    for i, row in enumerate(rows):
        row["surface"] = i
        row["mean_brightness"] = round(float(brightness[i]), 3)
    out = storage.path("surface_tiles")
    with atomic_dir(out) as tmp:
        save_npy(tmp / "images.npy", stack)
        write_text(tmp / "index.csv", _csv_text(rows, SURFACE_COLUMNS))
    land = sum(1 for r in rows if r["land_fraction"] != "" and float(r["land_fraction"]) > LAND_SHARE)
    ocean = sum(1 for r in rows if r["land_fraction"] != "" and float(r["land_fraction"]) <= LAND_SHARE)
    if not rows:
        context.log.warning("the surface pool is empty: no product has a clear surface tile and no "
                            "extra_surface_dir is set; composites cannot be made")
    md = {**figures({"count": len(rows), "land": land, "ocean": ocean, "user": n_user,
                     "user_tiles_skipped_black": skipped if config.extra_surface_dir else None,
                     "products": len(keys), "tile_size": size}),
          "path": dg.MetadataValue.path(str(out)),
          "index": dg.MetadataValue.path(str(out / "index.csv")),
          "per_product": dg.MetadataValue.json(per_product)}
    if rows:
        cells = [stack[i] for i in range(min(len(stack), 12))]
        md["preview"] = preview(grid([cells[k:k + 6] for k in range(0, len(cells), 6)], 80),
                                f"surface pool: first {len(cells)} of {len(rows)} tiles", 560)
    else:
        md["empty"] = dg.MetadataValue.text("the surface pool is empty")
    return dg.MaterializeResult(metadata=md)


# --------------------------------------------------------------------------- composites


class CompositesConfig(dg.Config):
    blend: str = Field("alpha", description="'alpha': mask-exact opacity blend out = surface*(1-a) + colour*a "
                                            "(a = 0 outside the mask); 'original': the original CloudGAN's 50 % "
                                            "blend + intensity stretch, for comparison only (changes clear pixels; "
                                            "the checks on composites fail on it)")
    min_opacity: float = Field(0.35, description="opacity of the darkest masked cloud pixel (0..1): inside the mask "
                                                 "a = min + (max - min) * (mean RGB / 255) ** gamma")
    max_opacity: float = Field(1.0, description="opacity of a white cloud pixel (0..1)")
    gamma: float = Field(1.0, description="exponent on the cloud brightness (>1: thinner mid-bright cloud)")
    whiten: float = Field(0.5, description="share of white mixed into the cloud colour (0..1)")
    seed: int = Field(0, description="seed of the surface assignment; each partition uses "
                                     "sha256('<seed>:<product>') so products get different surfaces")
    prefer_other_product: bool = Field(True, description="lay a cloud over a surface from another product "
                                                         "when an unused one is left")


def _load_clouds(folder: Path, key: str) -> tuple[np.ndarray, np.ndarray, list[dict], dict]:
    """Read and validate ``synthetic_clouds/<key>``: clouds, 0/1 masks, index rows, clouds.json."""
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


def _load_pool(storage: CloudGANStorage) -> tuple[np.ndarray, list[dict]]:
    folder = storage.path("surface_tiles")
    if not (folder / "images.npy").is_file():
        raise CloudGANError(f"{folder}: no surface pool; materialize surface_tiles first")
    rows = _read_csv(folder / "index.csv")
    images = np.load(folder / "images.npy", mmap_mode="r")
    if len(rows) != len(images):
        raise CloudGANError(f"{folder}: index.csv has {len(rows)} rows for {len(images)} tiles")
    return images, rows


@dg.asset(partitions_def=products_partitions, group_name="dataset", deps=["synthetic_clouds", "surface_tiles"],
          kinds={"numpy"},
          description="Generated clouds laid over surface tiles with a per-pixel opacity; clear pixels stay "
                      "byte-identical to the surface, so the mask is exact. images/masks/clouds/surfaces.npy + "
                      "index.csv (with the surface source) + composites.json.")
def composites(context: dg.AssetExecutionContext, config: CompositesConfig,
               storage: CloudGANStorage) -> dg.MaterializeResult:
    key = context.partition_key
    if config.blend not in BLENDS:
        raise CloudGANError(f"blend must be one of {BLENDS}, got {config.blend!r}")
    clouds, masks, index, info = _load_clouds(storage.path("synthetic_clouds", key), key)
    n = len(clouds)
    pool, pool_rows = _load_pool(storage)
    if n and not len(pool):
        raise CloudGANError(f"surface pool {storage.path('surface_tiles')} is empty: no cloud-free surface tile to "
                            f"place the {n} cloud tile(s) of {key} on (materialize products with clear tiles, "
                            "set surface_tiles' extra_surface_dir, then re-materialize surface_tiles)")
    if n and pool.shape[1:3] != clouds.shape[1:3]:
        raise CloudGANError(f"surface tiles are {pool.shape[1]} px but the clouds of {key} are {clouds.shape[1]} px; "
                            "materialize both with one tile size")
    seed = derived_seed(config.seed, key)
    products = [str(r.get("product", key)) for r in index]
    pick = assign_surfaces(products, [r["product"] for r in pool_rows], seed=seed,
                           prefer_other_product=config.prefer_other_product)
    size = clouds.shape[1:3]
    surfaces = np.asarray(pool[pick]) if n else np.zeros((0, *size, 3), np.uint8)
    settings = {"min_opacity": config.min_opacity, "max_opacity": config.max_opacity, "gamma": config.gamma,
                "whiten": config.whiten}
    images = composite(surfaces, clouds, masks, blend=config.blend, **settings) if n else surfaces.copy()
    fractions = masks.reshape(n, -1).mean(axis=1) if n else np.zeros(0)
    cloudy = masks.astype(bool)
    if config.blend == "alpha" and n:
        alpha = cloud_opacity(clouds, masks, min_opacity=config.min_opacity, max_opacity=config.max_opacity,
                              gamma=config.gamma)
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
    summary = {"product": key, "count": n, "blend": config.blend, **settings, "seed": config.seed,
               "assignment_seed": seed, "prefer_other_product": config.prefer_other_product,
               "surface_pool": len(pool_rows), "surfaces_used": int(np.unique(pick).size),
               "model_sha256": info["model_sha256"], "model": info.get("model"), "clouds_seed": info.get("seed"),
               "mean_opacity": round(mean_opacity, 6), "mean_brightness_change_inside": round(change_inside, 4),
               "mean_brightness": round(mean_brightness, 4)}
    out = storage.path("composites", key)
    with atomic_dir(out) as tmp:
        save_npy(tmp / "images.npy", images)
        save_npy(tmp / "masks.npy", masks)
        save_npy(tmp / "clouds.npy", clouds)
        save_npy(tmp / "surfaces.npy", surfaces)
        write_text(tmp / "index.csv", _csv_text(rows, COMPOSITE_COLUMNS))
        write_text(tmp / "composites.json", json.dumps(summary, indent=2, sort_keys=True))
    md = {**figures({"count": n, "blend": config.blend, "mean_opacity": mean_opacity,
                     "mean_brightness_change_inside": change_inside, "mean_brightness": mean_brightness,
                     "surface_pool": len(pool_rows), "surfaces_used": summary["surfaces_used"],
                     "model_sha256": info["model_sha256"]}),
          "path": dg.MetadataValue.path(str(out)), "index": dg.MetadataValue.path(str(out / "index.csv"))}
    if n:
        show = range(min(n, PREVIEW_ROWS))
        md["preview"] = preview(grid([[masks[i], clouds[i], surfaces[i], images[i]] for i in show], 96),
                                "mask | cloud | surface | composite", 480)
    else:
        md["empty"] = dg.MetadataValue.text(f"{key} has no cloud tiles (no generator inputs in its cover range); "
                                            "an empty partition is a valid result")
    return dg.MaterializeResult(metadata=md)


# --------------------------------------------------------------------------- training_set


class TrainingSetConfig(dg.Config):
    max_pairs: Optional[int] = Field(None, description="at most this many pairs (None: no limit)")
    min_cover: float = Field(0.0, description="keep pairs with cloud fraction >= this (0..1)")
    max_cover: float = Field(1.0, description="keep pairs with cloud fraction <= this (0..1)")
    balanced: bool = Field(False, description="take the same number of pairs from every cover bin (with max_pairs: "
                                              "shared as evenly as the bins allow)")
    cover_bins: int = Field(10, description="number of equal-width cover bins over [min_cover, max_cover] for "
                                            "balanced sampling")
    train_fraction: float = Field(0.8, description="share of products in train")
    val_fraction: float = Field(0.1, description="share of products in val")
    test_fraction: float = Field(0.1, description="share of products in test (no product is in two splits)")
    seed: int = Field(0, description="seed of the selection and the split (recorded in the manifest)")


def _composite_partition(storage: CloudGANStorage, key: str) -> tuple[dict, list[dict], dict[str, np.ndarray]]:
    folder = storage.path("composites", key)
    summary = json.loads((folder / "composites.json").read_text(encoding="utf-8"))
    rows = _read_csv(folder / "index.csv")
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r")
              for name in ("images", "masks", "clouds", "surfaces")}
    for name, arr in arrays.items():
        if len(arr) != len(rows):
            raise CloudGANError(f"{folder / (name + '.npy')}: {len(arr)} tiles but index.csv has {len(rows)} rows")
    return summary, rows, arrays


def _one(values: dict[str, object], what: str) -> object:
    """The single value shared by all partitions, or a clear error listing who has which."""
    distinct = sorted({json.dumps(v, sort_keys=True) for v in values.values()})
    if len(distinct) > 1:
        by = {}
        for key, v in values.items():
            by.setdefault(json.dumps(v, sort_keys=True), []).append(key)
        listing = "; ".join(f"{v}: {', '.join(ks)}" for v, ks in sorted(by.items()))
        raise CloudGANError(f"composite partitions differ in {what} ({listing}); re-materialize the stale "
                            "partitions so one training set comes from one setting")
    return json.loads(distinct[0]) if distinct else None


@dg.asset(group_name="dataset", deps=["composites"], kinds={"python"},
          description="The export users train on: images/, masks/ (0/255), clouds/, surface/ (one number per pair), "
                      "manifest.jsonl, README.md and training_set.zip, from all composite partitions; split by "
                      "product; deterministic; replaced atomically.")
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig,
                 storage: CloudGANStorage) -> dg.MaterializeResult:
    keys = _partitions_with(context, storage, "composites", "composites.json")
    parts = {k: _composite_partition(storage, k) for k in keys}
    nonempty = {k: p for k, p in parts.items() if p[1]}
    model_sha = _one({k: p[0]["model_sha256"] for k, p in nonempty.items()}, "generator model (model_sha256)")
    blend = _one({k: p[0]["blend"] for k, p in nonempty.items()}, "blend")
    settings = _one({k: {s: p[0][s] for s in ("min_opacity", "max_opacity", "gamma", "whiten", "seed")}
                     for k, p in nonempty.items()}, "composite settings")
    candidates = [(k, i) for k in keys for i in range(len(parts[k][1]))]
    fractions = np.array([float(parts[k][1][i]["cloud_fraction"]) for k, i in candidates], dtype=np.float64)
    chosen = select_pairs(fractions, config.cover_bins, max_pairs=config.max_pairs,
                          cover_range=(config.min_cover, config.max_cover), balanced=config.balanced, seed=config.seed)
    picked = [candidates[j] for j in chosen.tolist()]
    split = split_by_product(sorted({k for k, _ in picked}),
                             fractions=(config.train_fraction, config.val_fraction, config.test_fraction),
                             seed=config.seed)

    def pairs():
        for k, i in picked:
            _, rows, arr = parts[k]
            r = rows[i]
            yield TrainingPair(image=np.asarray(arr["images"][i]), mask=np.asarray(arr["masks"][i]),
                               cloud=np.asarray(arr["clouds"][i]), surface=np.asarray(arr["surfaces"][i]),
                               product=r["product"], row=int(r["row"]), col=int(r["col"]),
                               cloud_fraction=float(r["cloud_fraction"]), surface_source=r["surface_source"],
                               split=split[k])

    card = {"composite settings": settings, "selection": {
        "max_pairs": config.max_pairs, "cover_range": [config.min_cover, config.max_cover],
        "balanced": config.balanced, "cover_bins": config.cover_bins,
        "split_fractions": [config.train_fraction, config.val_fraction, config.test_fraction]},
        "candidates": len(candidates), "generator seeds": {k: p[0].get("clouds_seed") for k, p in nonempty.items()}}
    dest = storage.path("training_set")
    summary = write_training_set(dest, pairs(), model_sha256=str(model_sha or ""), seed=config.seed,
                                 blend=str(blend or ""), extra_card=card)
    md = {**figures({"count": summary.count, "candidates": len(candidates), "partitions": len(keys),
                     "zip_sha256": summary.zip_sha256, "model_sha256": model_sha, "blend": blend}),
          **figures({f"{s}_pairs": summary.split_counts[s] for s in SPLITS}),
          "path": dg.MetadataValue.path(str(dest)), "zip": dg.MetadataValue.path(str(summary.zip_path)),
          "split_products": dg.MetadataValue.json(summary.split_products),
          "cover_histogram": dg.MetadataValue.md(_histogram_md(summary.histogram))}
    if picked:
        rows = []
        for k, i in picked[:PREVIEW_ROWS]:
            arr = parts[k][2]
            rows.append([arr["masks"][i], arr["clouds"][i], arr["surfaces"][i], arr["images"][i]])
        md["preview"] = preview(grid(rows, 96), "mask | cloud | surface | composite (first pairs)", 480)
    else:
        context.log.warning("the training set is empty: no composite pair in the cover range")
    return dg.MaterializeResult(metadata=md, data_version=dg.DataVersion(summary.zip_sha256))


# --------------------------------------------------------------------------- quality_report


@dg.asset(group_name="dataset", deps=["training_set"], kinds={"python"},
          description="Detector IoU (brightness threshold vs mask) and brightness change inside/outside the mask for "
                      "the training set's alpha composites and for the original 50 % blend on the same inputs, plus "
                      "the cover histogram. report.json + report.png.")
def quality_report(context: dg.AssetExecutionContext, storage: CloudGANStorage) -> dg.MaterializeResult:
    dest = storage.path("training_set")
    images, masks, rows = read_training_set(dest)
    clouds, surfaces = read_training_sources(dest)
    fractions = np.array([float(r["cloud_fraction"]) for r in rows], dtype=np.float64)
    report = compute_quality_report(images, surfaces, clouds, masks, cloud_fractions=fractions)
    report["zip_sha256"] = hashlib.sha256((dest / "training_set.zip").read_bytes()).hexdigest()
    png = report_plot_png(report)
    out = storage.path("quality_report")
    with atomic_dir(out) as tmp:
        write_text(tmp / "report.json", json.dumps(report, indent=2, sort_keys=True))
        write_bytes(tmp / "report.png", png)
    a, o = report["alpha"], report["original"]
    table = _md_table(
        ("figure", "alpha composite", "original 50 % blend"),
        [("detector IoU (set Otsu)", f"{a['detector_iou']:.3f}", f"{o['detector_iou']:.3f}"),
         ("detector IoU (per-tile Otsu)", f"{a['detector_iou_per_tile']:.3f}", f"{o['detector_iou_per_tile']:.3f}"),
         ("Otsu threshold (DN)", f"{a['threshold']:.1f}", f"{o['threshold']:.1f}"),
         ("brightness change inside mask (DN)", f"{a['brightness_inside']:+.1f}", f"{o['brightness_inside']:+.1f}"),
         ("brightness change outside mask (DN)", f"{a['brightness_outside']:+.1f}",
          f"{o['brightness_outside']:+.1f}"),
         ("mean abs change outside mask (DN)", f"{a['brightness_outside_abs']:.2f}",
          f"{o['brightness_outside_abs']:.2f}")])
    plot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    md = {**figures({"pairs": report["n_pairs"], "alpha_detector_iou": a["detector_iou"],
                     "original_detector_iou": o["detector_iou"], "iou_gain": report["iou_gain"],
                     "iou_gain_per_tile": report["iou_gain_per_tile"],
                     "alpha_brightness_outside_abs": a["brightness_outside_abs"],
                     "original_brightness_outside_abs": o["brightness_outside_abs"]}),
          "table": dg.MetadataValue.md(table),
          "plot": preview(plot, "detector IoU, brightness change, cover histogram", 720),
          "cover_histogram": dg.MetadataValue.md(_histogram_md(report["cover_histogram"])),
          "report": dg.MetadataValue.path(str(out / "report.json")),
          "report_png": dg.MetadataValue.path(str(out / "report.png"))}
    if report["iou_gain"] <= 0:
        context.log.warning(f"the alpha composite does not beat the original blend on detector IoU "
                            f"({a['detector_iou']:.3f} vs {o['detector_iou']:.3f})")
    return dg.MaterializeResult(metadata=md)
