"""Benchmark: one full-size product through products → masks + false_color → tiles → sorted_tiles.

Makes a full-size simulated SL_1_RBT product (2400 x 3000 on the 500 m grid, all nine bands,
zipped like a download), then runs the same ``build`` functions the Dagster assets call and prints,
per stage and in total, the wall seconds and the process's CPU seconds (all threads; less
sensitive than wall time to other work on a shared machine), as the minimum and the median over
the repeats, and the peak resident memory of the process.

    .venv/bin/python benchmarks/bench_scene.py [--rows 2400 --cols 3000 --repeat 5] [--product ZIP]

Goal (issue 10): <= 1.0 s per full-size product and <= 1 GiB peak on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cloudgan_core.simulate import simulate_product
from cloudgan_core.stages import false_color, masks, products, sorted_tiles, tiles


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_once(src: Path, root: Path, key: str) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per stage, and in total, for one product through the scene stages under ``root``."""
    shutil.rmtree(root, ignore_errors=True)
    t = {}
    start, start_cpu = time.perf_counter(), time.process_time()
    for name, step in (("products", lambda: products.register(root, src, key)), ("masks", lambda: masks.build(root, key)),
                       ("false_color", lambda: false_color.build(root, key)), ("tiles", lambda: tiles.build(root, key)),
                       ("sorted_tiles", lambda: sorted_tiles.build(root, key))):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        t[name] = (time.perf_counter() - t0, time.process_time() - c0)
    t["total"] = (time.perf_counter() - start, time.process_time() - start_cpu)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2400)
    ap.add_argument("--cols", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--product", type=Path, help="a product zip to use instead of simulating one (e.g. to "
                                                 "compare two versions of the code on the same input)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cloudgan-bench-"))
    try:
        if args.product:
            src = args.product
        else:  # simulated in a child process, so this process's peak memory is the pipeline's alone
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                src = pool.apply(simulate_product, (tmp / "inbox",),
                                 {"seed": 7, "rows": args.rows, "cols": args.cols, "as_zip": True})
        key = src.name.removesuffix(".zip")
        rss_before = peak_rss_mib()
        runs = [run_once(src, tmp / "store", key) for _ in range(args.repeat)]
        print(f"machine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
              f"load average {os.getloadavg()[0]:.1f}")
        made = "given" if args.product else f"simulated, {args.rows} x {args.cols} on the 500 m grid"
        print(f"product: {src.name} ({made}), zip {src.stat().st_size / 2**20:.1f} MiB")
        print(f"stage         wall s min / median    CPU s min / median   ({args.repeat} runs)")
        for k in runs[0]:
            wall, cpu = ([r[k][i] for r in runs] for i in (0, 1))
            print(f"{k:13s} {min(wall):7.3f} / {statistics.median(wall):7.3f}    "
                  f"{min(cpu):7.3f} / {statistics.median(cpu):7.3f}")
        print(f"peak RSS: {peak_rss_mib():.0f} MiB (before the first run: {rss_before:.0f} MiB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
