"""Benchmark: realism figures and render time of the cloud stages on simulated products.

Simulates the demo's four products (``cloudgan_assets.demo.SAMPLES``, 768 x 1024), cuts their
simulated nine-band scenes into 256-px tiles in the layout of the nine-band data contract
(``sorted_tiles/<key>/{surface,gan_input}/`` with bands, flags and the four angles; the surface
pool), then runs the stages synthetic_clouds → composites → training_set → quality_report once per
generator (``procedural``, ``gan`` with the bundled model, and ``gan`` without the anti-alias
filter) and prints the realism figures of the composites and of the original 50 % blend. With
``--full`` it also times ``composites.build`` on the tiles of one 2400 x 3000 product.

    .venv/bin/python benchmarks/bench_render.py [--full] [--root /tmp/bench-render]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from cloudgan_core.atomic import save_npy
from cloudgan_core.clouds import false_color
from cloudgan_core.simulate import product_name, simulate_product
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS
from cloudgan_core.slstr.names import product_id
from cloudgan_core.stages import composites, quality_report, surface_tiles, synthetic_clouds, training_set

SIZE = 256
ANGLES = ("solar_zenith", "solar_azimuth", "view_zenith", "view_azimuth")
TARGETS = ("texture_slope", "texture_cv", "nyquist_ratio", "half_nyquist_ratio", "edge_opacity_ratio",
           "bright_cold_fraction", "s5_s3_cloud", "s5_s3_snow", "detector_iou", "brightness_outside_abs")


def _csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["tile"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def contract_tiles(root: Path, key: str, truth) -> tuple[list[dict], list[np.ndarray], list[np.ndarray]]:
    """Write ``sorted_tiles/<key>`` from the simulated truth; returns the surface rows, bands, flags."""
    rows_n, cols_n = truth.cloud.shape[0] // SIZE, truth.cloud.shape[1] // SIZE
    angles = {"solar_zenith": truth.sza, "solar_azimuth": truth.solar_azimuth, "view_zenith": truth.view_zenith,
              "view_azimuth": truth.view_azimuth}
    groups: dict[str, dict[str, list]] = {g: {"bands": [], "masks": [], "flags": [], "index": []}
                                          for g in ("surface", "gan_input")}
    k = 0
    for r in range(rows_n):
        for c in range(cols_n):
            win = (slice(r * SIZE, (r + 1) * SIZE), slice(c * SIZE, (c + 1) * SIZE))
            bands = truth.bands[(slice(None), *win)]
            cloud = truth.cloud[win]
            valid = np.isfinite(bands).all(axis=0) & ~truth.unfilled[win]
            flags = (PIXEL_FLAG_BITS["day"] | PIXEL_FLAG_BITS["sza_ok"]) + np.zeros(cloud.shape, np.uint16)
            flags |= np.where(valid, PIXEL_FLAG_BITS["valid"], 0).astype(np.uint16)
            for name, plane in (("cloud", cloud), ("snow", truth.snow[win]), ("land", truth.land[win])):
                flags |= np.where(plane, PIXEL_FLAG_BITS[name], 0).astype(np.uint16)
            row = {"tile": k, "product": key, "row": r * SIZE, "col": c * SIZE, "size": SIZE,
                   "cloud_fraction": round(float(cloud.mean()), 6), "valid_fraction": round(float(valid.mean()), 6),
                   "day_fraction": 1.0, "land_fraction": round(float(truth.land[win].mean()), 6),
                   "snow_fraction": round(float(truth.snow[win].mean()), 6),
                   **{a: round(float(v[win].mean()), 4) for a, v in angles.items()}}
            k += 1
            clear = valid.all() and not (truth.tau[win] > 0).any() and not truth.shadow[win].any()
            group = "surface" if clear else ("gan_input" if 0.1 < cloud.mean() <= 0.95 and valid.mean() >= 0.9
                                              else None)
            if group:
                g = groups[group]
                g["bands"].append(np.nan_to_num(bands, nan=0.0) if group == "gan_input" else bands)
                g["masks"].append(cloud.astype(np.uint8))
                g["flags"].append(flags)
                g["index"].append(row)
    for name, g in groups.items():
        out = root / "sorted_tiles" / key / name
        out.mkdir(parents=True, exist_ok=True)
        bands = np.stack(g["bands"]) if g["bands"] else np.zeros((0, 9, SIZE, SIZE), np.float32)
        save_npy(out / "bands.npy", bands.astype(np.float32))
        save_npy(out / "images.npy", np.stack([false_color(b) for b in bands]) if len(bands)
                 else np.zeros((0, SIZE, SIZE, 3), np.uint8))
        save_npy(out / "masks.npy", np.stack(g["masks"]) if g["masks"] else np.zeros((0, SIZE, SIZE), np.uint8))
        save_npy(out / "flags.npy", np.stack(g["flags"]) if g["flags"] else np.zeros((0, SIZE, SIZE), np.uint16))
        _csv(out / "index.csv", g["index"])
    _csv(root / "sorted_tiles" / key / "index.csv", groups["surface"]["index"] + groups["gan_input"]["index"])
    s = groups["surface"]
    return s["index"], s["bands"], s["flags"]


def write_pool(root: Path, parts: list[tuple[list[dict], list, list]]) -> int:
    rows, bands, flags = [], [], []
    for index, b, f in parts:
        for row, tile_bands, tile_flags in zip(index, b, f):
            rows.append({"surface": len(rows), "source": f"{row['product']}:{row['row']}:{row['col']}",
                         "product": row["product"], "row": row["row"], "col": row["col"],
                         "land_fraction": row["land_fraction"], "mean_brightness": 0.0,
                         "snow_fraction": row["snow_fraction"], "bands_source": "product",
                         **{a: row[a] for a in ANGLES}})
            bands.append(tile_bands)
            flags.append(tile_flags)
    out = surface_tiles.folder(root)
    out.mkdir(parents=True, exist_ok=True)
    stack = np.stack(bands).astype(np.float32)
    save_npy(out / "bands.npy", stack)
    save_npy(out / "images.npy", np.stack([false_color(b) for b in stack]))
    save_npy(out / "flags.npy", np.stack(flags))
    _csv(out / "index.csv", rows)
    return len(rows)


def run(root: Path, keys: list[str], label: str, config: synthetic_clouds.SyntheticCloudsConfig) -> dict:
    model = sha = None
    if config.generator == "gan":
        from cloudgan_core.digests import file_digest
        from cloudgan_core.gan import load_generator
        from cloudgan_core.storage import PROJECT_DIR

        path = PROJECT_DIR / "data" / "models" / "latest_net_G_B.pth"
        model, sha = load_generator(path, "cpu"), file_digest(path)
    seconds = 0.0
    for key in keys:
        synthetic_clouds.build(root, key, config, model=model, model_name="latest_net_G_B.pth",
                               model_sha256=sha or "", device="cpu", batch_size=2)
        t0 = time.perf_counter()
        composites.build(root, key)
        seconds += time.perf_counter() - t0
    training_set.build(root, products=keys)
    report = quality_report.build(root).report
    out = {"label": label, "pairs": report.n_pairs, "composites_s": round(seconds, 2)}
    for which in ("composite", "original"):
        figures = report.realism[which]
        out[which] = {k: (None if figures.get(k) is None else round(figures[k], 4)) for k in TARGETS}
    out["targets_met"] = report.targets_met
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--full", action="store_true", help="also time composites on a 2400 x 3000 product")
    args = parser.parse_args()
    from cloudgan_assets.demo import SAMPLE_SHAPE, SAMPLES

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-render-"))
    inbox = root / "inbox"
    keys, parts = [], []
    for seed, cover, land in SAMPLES:
        _, truth = simulate_product(inbox, seed=seed, rows=SAMPLE_SHAPE[0], cols=SAMPLE_SHAPE[1], cloud_cover=cover,
                                    land_fraction=land, return_truth=True)
        key = product_id(product_name(seed))
        parts.append(contract_tiles(root, key, truth))
        keys.append(key)
    print(f"surface pool: {write_pool(root, parts)} tiles")
    for label, config in (("procedural", synthetic_clouds.SyntheticCloudsConfig(generator="procedural")),
                          ("gan", synthetic_clouds.SyntheticCloudsConfig()),
                          ("gan, no anti-alias", synthetic_clouds.SyntheticCloudsConfig(gan_antialias=False))):
        print(json.dumps(run(root, keys, label, config)))
    if args.full:
        _, truth = simulate_product(inbox, seed=99, rows=2400, cols=3000, cloud_cover=0.45, return_truth=True)
        key = product_id(product_name(99))
        contract_tiles(root, key, truth)
        synthetic_clouds.build(root, key, synthetic_clouds.SyntheticCloudsConfig(generator="procedural"))
        n = len(synthetic_clouds.read(root, key).masks)
        best = min(_timed(lambda: composites.build(root, key)) for _ in range(3))
        print(f"full product 2400 x 3000: {n} cloud tiles of {SIZE} px, composites.build best of 3 {best:.2f} s")
    if args.root is None:
        shutil.rmtree(root)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
