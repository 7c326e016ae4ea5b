"""Benchmark: one full-size product through products → masks + false_color → tiles → sorted_tiles.

Makes a full-size simulated SL_1_RBT product (2400 x 3000 on the 500 m grid, zipped like a
download), then runs the same ``build`` functions the Dagster assets call and prints wall
seconds per stage and in total, and the peak resident memory of the process.

    .venv/bin/python benchmarks/bench_scene.py [--rows 2400 --cols 3000 --repeat 5]

Goal (issue 10): <= 1.0 s per full-size product and <= 1 GiB peak on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from cloudgan_core.simulate import simulate_product
from cloudgan_core.stages import false_color, masks, products, sorted_tiles, tiles


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_once(src: Path, root: Path, key: str) -> dict[str, float]:
    """Seconds per stage, and in total, for one product through the scene stages under ``root``."""
    shutil.rmtree(root, ignore_errors=True)
    t = {}
    start = time.perf_counter()
    for name, step in (("products", lambda: products.register(root, src, key)), ("masks", lambda: masks.build(root, key)),
                       ("false_color", lambda: false_color.build(root, key)), ("tiles", lambda: tiles.build(root, key)),
                       ("sorted_tiles", lambda: sorted_tiles.build(root, key))):
        t0 = time.perf_counter()
        step()
        t[name] = time.perf_counter() - t0
    t["total"] = time.perf_counter() - start
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2400)
    ap.add_argument("--cols", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cloudgan-bench-"))
    try:
        # Simulate in a child process so this process's peak memory is the pipeline's alone.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            src = pool.apply(simulate_product, (tmp / "inbox",),
                             {"seed": 7, "rows": args.rows, "cols": args.cols, "as_zip": True})
        key = src.name.removesuffix(".zip")
        rss_before = peak_rss_mib()
        runs = [run_once(src, tmp / "store", key) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["total"])
        print(f"machine: {platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}")
        print(f"product: {args.rows} x {args.cols} (500 m grid), zip {src.stat().st_size / 2**20:.1f} MiB")
        print("stage         seconds (best of %d)" % args.repeat)
        for k, v in best.items():
            print(f"{k:13s} {v:7.3f}")
        print(f"peak RSS: {peak_rss_mib():.0f} MiB (before the first run: {rss_before:.0f} MiB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
