"""Small stored inputs for the dataset stage tests: sorted tiles, a surface pool and synthetic clouds.

Real files in the layout of the nine-band data contract (realism plan, issue 11): tile groups with
``images.npy``, ``masks.npy``, ``bands.npy`` (N, 9, H, W float32), ``flags.npy`` (N, H, W uint16)
and an ``index.csv`` with the four angle columns; the surface pool with ``images.npy``,
``bands.npy``, ``flags.npy`` and ``index.csv`` (+ angles, ``snow_fraction``, ``bands_source``).
Written file by file (not through the upstream writers, which predate the contract), small enough
that a whole chain surface pool → composites → training set → quality report runs in about a second.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from cloudgan_core.atomic import save_npy
from cloudgan_core.clouds import BANDS, Geometry, ProceduralClouds, false_color, procedural_thickness
from cloudgan_core.composite import render_composites
from cloudgan_core.export import split_by_product
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS
from cloudgan_core.stages import composites, surface_tiles, synthetic_clouds, training_set
from cloudgan_core.tiles import INDEX_COLUMNS

SIZE = 16
MODEL_SHA = hashlib.sha256(b"test generator").hexdigest()
#: Sun and view angles (degrees) of every fixture tile: sun in the south-east, 40 deg from the zenith.
GEOMETRY = {"solar_zenith": 40.0, "solar_azimuth": 140.0, "view_zenith": 10.0, "view_azimuth": 100.0}
_CLEAR = PIXEL_FLAG_BITS["day"] | PIXEL_FLAG_BITS["valid"] | PIXEL_FLAG_BITS["sza_ok"]


def tile_bands(rng: np.random.Generator, n: int, size: int = SIZE, *, snow: np.ndarray | None = None) -> np.ndarray:
    """``float32 (n, 9, size, size)`` textured clear surfaces: S1-S6 reflectance 0.03-0.3 (S5 a little
    brighter than S3 as vegetation and soil), S7-S9 280-295 K; where ``snow`` (n, size, size) is set,
    snow: bright in S1-S3 (0.8), dark in S5/S6 (0.1, 0.05), cold (265 K)."""
    bands = np.empty((n, len(BANDS), size, size), np.float32)
    base = rng.uniform(0.03, 0.25, size=(n, 1, size, size)).astype(np.float32)
    bands[:, :6] = base * np.array([0.8, 0.9, 1.0, 0.1, 1.2, 0.8], np.float32)[None, :, None, None]
    bands[:, 6:] = rng.uniform(280.0, 295.0, size=(n, 1, size, size)).astype(np.float32)
    if snow is not None:
        s = snow.astype(bool)
        for b, value in enumerate((0.8, 0.8, 0.8, 0.02, 0.1, 0.05, 265.0, 265.0, 265.0)):
            bands[:, b][s] = value
    return bands


def _csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _index_columns(rows: list[dict]) -> list[str]:
    return [c for c in INDEX_COLUMNS if not rows or c in rows[0]]  # INDEX_COLUMNS holds the four angles


def _write_group(folder: Path, bands: np.ndarray, masks: np.ndarray, flags: np.ndarray, index: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.stack([false_color(b) for b in bands]) if len(bands) else np.zeros((*masks.shape, 3), np.uint8)
    save_npy(folder / "images.npy", images)
    save_npy(folder / "masks.npy", masks.astype(np.uint8))
    save_npy(folder / "bands.npy", bands.astype(np.float32))
    save_npy(folder / "flags.npy", flags.astype(np.uint16))
    _csv(folder / "index.csv", index, _index_columns(index))


def write_sorted(root: Path, key: str, land: list[float], *, gan_masks: np.ndarray | None = None,
                 size: int = SIZE, seed: int = 0, snow_tiles: tuple[int, ...] = (),
                 geometry: dict[str, float] = GEOMETRY) -> Path:
    """``sorted_tiles/<key>``: ``surface/`` with len(land) textured clear tiles (the tiles in
    ``snow_tiles`` snow-covered in their left half), ``gan_input/`` with ``gan_masks``, both with
    bands, flags and angles, and the full ``index.csv``."""
    rng = np.random.default_rng(seed)
    n = len(land)
    snow = np.zeros((n, size, size), bool)
    for i in snow_tiles:
        snow[i, :, : size // 2] = True
    bands = tile_bands(rng, n, size, snow=snow)
    flags = np.full((n, size, size), _CLEAR, np.uint16) | np.where(snow, PIXEL_FLAG_BITS["snow"], 0).astype(np.uint16)
    index = [{"tile": i, "product": key, "row": i * size, "col": 2 * size, "size": size, "cloud_fraction": 0.0,
              "valid_fraction": 1.0, "day_fraction": 1.0, "land_fraction": lf,
              "snow_fraction": round(float(snow[i].mean()), 6), "bin": "0-10", "surface_candidate": True,
              "gan_input": False, **geometry} for i, lf in enumerate(land)]
    masks = np.zeros((0, size, size), np.uint8) if gan_masks is None else gan_masks.astype(np.uint8)
    m = len(masks)
    gan_bands = tile_bands(rng, m, size)
    cloudy = masks[:, None] == 1  # cloud: 220 in every false-colour channel, cold
    gan_bands[:, :6] = np.where(cloudy, np.float32(220.25 / 255.0), gan_bands[:, :6])
    gan_bands[:, 6:] = np.where(cloudy, np.float32(250.0), gan_bands[:, 6:])
    gan_flags = np.full(masks.shape, _CLEAR, np.uint16) | (masks * PIXEL_FLAG_BITS["cloud"]).astype(np.uint16)
    gan_index = [{"tile": n + i, "product": key, "row": (n + i) * size, "col": 0, "size": size,
                  "cloud_fraction": round(float(mk.mean()), 6), "valid_fraction": 1.0, "day_fraction": 1.0,
                  "land_fraction": 0.0, "snow_fraction": 0.0, "bin": "10-95", "surface_candidate": False,
                  "gan_input": True, **geometry} for i, mk in enumerate(masks)]
    out = root / "sorted_tiles" / key
    _write_group(out / "surface", bands, np.zeros((n, size, size), np.uint8), flags, index)
    _write_group(out / "gan_input", gan_bands, masks, gan_flags, gan_index)
    all_rows = index + gan_index
    _csv(out / "index.csv", all_rows, _index_columns(all_rows))
    return out


def write_pool(root: Path, keys: list[str]) -> Path:
    """``surface_tiles/`` in the contract's layout from the ``surface/`` groups of ``keys`` (sorted tiles
    written by :func:`write_sorted`)."""
    images, bands, flags, rows = [], [], [], []
    for key in sorted(keys):
        group = root / "sorted_tiles" / key / "surface"
        images.append(np.load(group / "images.npy"))
        bands.append(np.load(group / "bands.npy"))
        flags.append(np.load(group / "flags.npy"))
        with open(group / "index.csv", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                rows.append({"source": f"{key}:{r['row']}:{r['col']}", "product": key, "row": r["row"],
                             "col": r["col"], "land_fraction": r["land_fraction"], "snow_fraction": r["snow_fraction"],
                             "bands_source": "product", **{c: r[c] for c in GEOMETRY}})
    stack = np.concatenate(images)
    for i, row in enumerate(rows):
        row["surface"] = i
        row["mean_brightness"] = round(float(stack[i].mean()), 3)
    out = surface_tiles.folder(root)
    out.mkdir(parents=True, exist_ok=True)
    save_npy(out / "images.npy", stack)
    save_npy(out / "bands.npy", np.concatenate(bands))
    save_npy(out / "flags.npy", np.concatenate(flags))
    _csv(out / "index.csv", rows, list(surface_tiles.COLUMNS))
    return out


def block_masks(n: int, size: int = SIZE) -> np.ndarray:
    """``n`` masks with a block of growing cover (tile i: rows 0..3+2i, columns 2..13)."""
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        masks[i, : 3 + 2 * i, 2:14] = 1
    return masks


def write_clouds(root: Path, key: str, n: int, *, seed: int, model_sha: str = MODEL_SHA,
                 top_height_km: float = 2.0) -> Path:
    """``synthetic_clouds/<key>``: :func:`block_masks` with procedural optical thickness, bright
    pictures and the fixture geometry, as a GAN run of the stand-in model ``model_sha`` would leave."""
    masks = block_masks(n)
    rng = np.random.default_rng(seed)
    tau = np.stack([procedural_thickness(m, ProceduralClouds(edge_width=2.0), rng).tau for m in masks]) \
        if n else np.zeros((0, SIZE, SIZE), np.float32)
    level = np.where(masks == 1, 230, 30) + rng.integers(0, 20, size=masks.shape)
    clouds = np.repeat(level[..., None], 3, axis=-1).astype(np.uint8)
    index = [{"tile": i, "product": key, "row": i * SIZE, "col": 0, "size": SIZE,
              "cloud_fraction": round(float(m.mean()), 6), **GEOMETRY, "top_height_km": top_height_km}
             for i, m in enumerate(masks)]
    data = synthetic_clouds.SyntheticCloudsData(clouds, masks, tau, index, model="test", model_sha256=model_sha,
                                                seed=seed)
    return synthetic_clouds.write(root, key, data)


def pool_of_two(root: Path) -> Path:
    """Products A (3 surfaces, the first half snow-covered) and B (2 surfaces) pooled."""
    write_sorted(root, "A", [0.9, 0.1, 0.6], seed=1, snow_tiles=(0,))
    write_sorted(root, "B", [0.0, 0.2], seed=2)
    return write_pool(root, ["A", "B"])


def composites_of(root: Path, keys_and_counts: dict[str, int], config=None) -> list[str]:
    """Synthetic clouds and composites of each product (``n`` tiles each); returns the keys."""
    for j, (key, n) in enumerate(keys_and_counts.items()):
        write_clouds(root, key, n, seed=j)
        composites.build(root, key, config or composites.CompositesConfig())
    return list(keys_and_counts)



def provenance(seed: int = 0, model_sha256: str = "ab" * 32, **kw) -> training_set.Provenance:
    """A training set's provenance: a GAN run with shadows on, the rendered blend."""
    return training_set.Provenance(**{"generator": "gan", "model_sha256": model_sha256, "seed": seed,
                                      "blend": "render", "shadows": True, **kw})


def make_pairs(n: int = 6, size: int = SIZE, seed: int = 0) -> list[training_set.TrainingPair]:
    """``n`` rendered training pairs (covers 5..95 %) of three products split by product."""
    rng = np.random.default_rng(seed)
    snow = np.zeros((n, size, size), bool)
    snow[0, :, : size // 2] = True
    bands = tile_bands(rng, n, size, snow=snow)
    images = np.stack([false_color(b) for b in bands])
    masks = (rng.random((n, size, size)) < np.linspace(0.05, 0.95, n)[:, None, None]).astype(np.uint8)
    tau = np.where(masks == 1, rng.uniform(0.3, 20.0, masks.shape), 0.0).astype(np.float32)
    out = render_composites(bands, images, tau, [2.0] * n, [Geometry(**GEOMETRY)] * n)
    clouds = np.where(masks[..., None] == 1, 220, 20).astype(np.uint8).repeat(3, axis=-1)
    products = [f"S3A_P{k % 3}" for k in range(n)]
    splits = split_by_product(products, seed=1)
    return [training_set.TrainingPair(
        image=out.images[k], mask=masks[k], shadow=out.shadow[k], cloud=clouds[k], surface=images[k],
        bands=out.bands[k], surface_bands=bands[k], snow=snow[k].astype(np.uint8), product=products[k], row=16 * k,
        col=32, cloud_fraction=float(masks[k].mean()), surface_source=f"S3B_SURF:{k}:0", split=splits[products[k]])
        for k in range(n)]
