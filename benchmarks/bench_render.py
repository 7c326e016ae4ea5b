"""Benchmark: realism figures and render time of the cloud stages on simulated products.

Simulates the demo's four products (``cloudgan_assets.demo.SAMPLES``, 768 x 1024), runs the
pipeline's stages on them (products → masks, false_color → tiles (256 px) → sorted_tiles, and the
surface pool), then synthetic_clouds → composites → training_set → quality_report once per
generator (``procedural``, ``gan`` with the bundled model, and ``gan`` without the anti-alias
filter) and prints the realism figures of the composites and of the original 50 % blend. With
``--full`` it also times ``composites.build`` on the tiles of one 2400 x 3000 product.

    .venv/bin/python benchmarks/bench_render.py [--full] [--root /tmp/bench-render]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


from cloudgan_core.simulate import simulate_product
from cloudgan_core.stages import (composites, false_color, masks, products, quality_report, sorted_tiles,
                                  surface_tiles, synthetic_clouds, tiles, training_set)

SIZE = 256
TARGETS = ("texture_slope", "texture_cv", "nyquist_ratio", "half_nyquist_ratio", "edge_opacity_ratio",
           "bright_cold_fraction", "s5_s3_cloud", "s5_s3_snow", "detector_iou", "brightness_outside_abs")


def scene(root: Path, source: Path) -> str:
    """Run the per-product stages products → sorted_tiles on ``source`` (256-px tiles); its key."""
    key = products.register(root, source).product
    masks.build(root, key)
    false_color.build(root, key)
    tiles.build(root, key, tiles.TilesConfig(tile_size=SIZE))
    sorted_tiles.build(root, key)
    return key


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
    keys = [scene(root, simulate_product(inbox, seed=seed, rows=SAMPLE_SHAPE[0], cols=SAMPLE_SHAPE[1],
                                         cloud_cover=cover, land_fraction=land)) for seed, cover, land in SAMPLES]
    pool = surface_tiles.build(root, products=keys)
    print(f"surface pool: {len(surface_tiles.read(root).images)} tiles ({pool.path})")
    for label, config in (("procedural", synthetic_clouds.SyntheticCloudsConfig(generator="procedural")),
                          ("gan", synthetic_clouds.SyntheticCloudsConfig()),
                          ("gan, no anti-alias", synthetic_clouds.SyntheticCloudsConfig(gan_antialias=False))):
        print(json.dumps(run(root, keys, label, config)))
    if args.full:
        key = scene(root, simulate_product(inbox, seed=99, rows=2400, cols=3000, cloud_cover=0.45))
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
