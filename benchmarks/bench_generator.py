"""Throughput of mask -> cloud generation: the original CycleGAN test path vs ours, on the CPU.

Every row uses the same network: ``resnet_9blocks`` ResNet generator, ngf 64 (11,378,179
parameters), weights drawn from N(0, 0.02) with a fixed seed, 256x256 tiles, 2 torch threads.

Rows
----
a. The original's test-time path (``test.py --model cycle_gan``): batch 1, per tile read one A
   and one B PNG, run G_A(real_A), G_B(fake_B), G_B(real_B), G_A(fake_A) in fp32 under
   ``no_grad``, and write six PNGs (real_A, fake_B, rec_A, real_B, fake_A, rec_B; 8-bit by
   truncation). The original also wrote an HTML index, not done here.
b. A plain single-pass loop: batch 1, read one mask PNG, one G_B pass in fp32, write one PNG.
c. Our path: ``cloudgan_core.gan.generate_clouds`` over an in-memory mask array (fp32,
   ``--batch-size``), then one ``.npy`` write of all cloud tiles.
d. As c, in bf16 (autocast on the CPU).

Each row runs in its own child process (after one untimed warm-up pass), so the reported peak
memory is that row's: the child's resident-set high-water mark from
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (torch runtime, model and data included), and the
same minus the child's RSS just after ``import torch`` (``/proc/self/status`` VmRSS).

Run::

    .venv/bin/python benchmarks/bench_generator.py            # about 1-2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_generator.py --tiles 64 --batch-size 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 256
SEED = 1234
THREADS = 2
ROWS = {
    "a": "original test path: 4 passes + 6 PNG writes, batch 1",
    "b": "plain loop: 1 PNG read + 1 pass + 1 PNG write, batch 1",
    "c": "generate_clouds fp32",
    "d": "generate_clouds bf16",
}


def _masks(n: int) -> np.ndarray:
    """Seeded blob masks (0/255), 10..90 % cloud, as mask tiles from the sorting step."""
    rng = np.random.default_rng(SEED)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        field = np.zeros((SIZE, SIZE))
        for _ in range(6):
            cy, cx = rng.uniform(0, SIZE, 2)
            r = rng.uniform(20, 70)
            field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        out[i] = (field > np.quantile(field, rng.uniform(0.1, 0.9))) * 255
    return out


def _generator(seed: int):
    import torch

    from cloudgan_core.gan import ResnetGenerator, init_weights

    net = ResnetGenerator(3, 3, ngf=64, n_blocks=9)
    return init_weights(net, generator=torch.Generator().manual_seed(seed)).eval()


def _write_inputs(folder: Path, masks: np.ndarray) -> None:
    from PIL import Image

    rng = np.random.default_rng(SEED + 1)
    for i, mask in enumerate(masks):
        Image.fromarray(mask).save(folder / f"mask_{i:04d}.png")
        cloud = (rng.integers(0, 60, (SIZE, SIZE, 3)) + (mask[..., None] > 0) * 150).astype(np.uint8)
        Image.fromarray(cloud).save(folder / f"cloud_{i:04d}.png")


def _reference_tensor(path: Path):
    """PNG -> (1, 3, H, W) in [-1, 1]: RGB, ToTensor, Normalize(0.5, 0.5), as the original loader."""
    import torch
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"))
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)
    return ((x - 0.5) / 0.5).unsqueeze(0)


def _reference_image(t) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> uint8 (H, W, 3), truncating as the original's tensor2im."""
    array = t[0].float().cpu().numpy()
    return ((np.transpose(array, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)


def _row_a(folder: Path, n: int) -> float:
    import torch
    from PIL import Image

    g_a, g_b = _generator(SEED), _generator(SEED + 1)
    out = folder / "out_a"
    out.mkdir()

    def one(i: int) -> None:
        real_a = _reference_tensor(folder / f"cloud_{i:04d}.png")
        real_b = _reference_tensor(folder / f"mask_{i:04d}.png")
        with torch.no_grad():
            fake_b = g_a(real_a)
            rec_a = g_b(fake_b)
            fake_a = g_b(real_b)
            rec_b = g_a(fake_a)
        images = {"real_A": real_a, "fake_B": fake_b, "rec_A": rec_a,
                  "real_B": real_b, "fake_A": fake_a, "rec_B": rec_b}
        for name, tensor in images.items():
            Image.fromarray(_reference_image(tensor)).save(out / f"{i:04d}_{name}.png")

    one(0)  # warm-up
    started = time.perf_counter()
    for i in range(n):
        one(i)
    return time.perf_counter() - started


def _row_b(folder: Path, n: int) -> float:
    import torch
    from PIL import Image

    g_b = _generator(SEED + 1)
    out = folder / "out_b"
    out.mkdir()

    def one(i: int) -> None:
        x = _reference_tensor(folder / f"mask_{i:04d}.png")
        with torch.no_grad():
            y = g_b(x)
        Image.fromarray(_reference_image(y)).save(out / f"{i:04d}.png")

    one(0)
    started = time.perf_counter()
    for i in range(n):
        one(i)
    return time.perf_counter() - started


def _row_ours(folder: Path, n: int, batch_size: int, precision: str) -> float:
    from cloudgan_core.atomic import save_npy
    from cloudgan_core.gan import generate_clouds

    g_b = _generator(SEED + 1)
    masks = _masks(n)
    generate_clouds(g_b, masks[:batch_size], batch_size=batch_size, precision=precision)  # warm-up
    started = time.perf_counter()
    result = generate_clouds(g_b, masks, batch_size=batch_size, precision=precision)
    save_npy(folder / f"clouds_{precision}.npy", result.clouds)
    return time.perf_counter() - started


def _rss_mib() -> float:
    """Current resident set size of this process (MiB), from /proc/self/status (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(row: str, folder: Path, n: int, batch_size: int) -> None:
    import torch

    import cloudgan_core.gan  # noqa: F401  (imported before the baseline is taken)

    torch.set_num_threads(THREADS)
    baseline = _rss_mib()
    if row == "a":
        seconds = _row_a(folder, n)
    elif row == "b":
        seconds = _row_b(folder, n)
    else:
        seconds = _row_ours(folder, n, batch_size, "fp32" if row == "c" else "bf16")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"row": row, "tiles": n, "seconds": seconds, "peak_rss_mib": peak_kib / 1024,
                      "baseline_rss_mib": baseline}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=24, help="tiles for rows c and d (default 24)")
    parser.add_argument("--tiles-baseline", type=int, default=4, help="tiles for rows a and b (default 4)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="batch size of rows c and d (default 1: fastest on a 2-core CPU)")
    parser.add_argument("--rows", default="abcd", help="which rows to run (default abcd)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, Path(args.folder), args.tiles, args.batch_size)
        return 0

    import torch

    print(f"resnet_9blocks ngf=64, {SIZE}x{SIZE} tiles, torch {torch.__version__}, {THREADS} threads, "
          f"{os.cpu_count()} CPUs; batch size of c/d: {args.batch_size}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_generator_") as tmp:
        folder = Path(tmp)
        _write_inputs(folder, _masks(args.tiles_baseline))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                             os.environ.get("PYTHONPATH", "")]))
        for row in args.rows:
            n = args.tiles_baseline if row in "ab" else args.tiles
            command = [sys.executable, __file__, "--child", row, "--folder", str(folder), "--tiles", str(n),
                       "--batch-size", str(args.batch_size)]
            done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            results[row] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[row]
            print(f"  ran {row}: {r['tiles']} tiles in {r['seconds']:.1f} s", flush=True)

    print()
    print("| row | path | tiles | s/tile | tiles/s | peak RSS (MiB) | peak above import (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row, r in results.items():
        rate = r["tiles"] / r["seconds"]
        r["rate"] = rate
        print(f"| {row} | {ROWS[row]} | {r['tiles']} | {r['seconds'] / r['tiles']:.3f} | {rate:.2f} | "
              f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['baseline_rss_mib']:.0f} |")
    if {"a", "b", "d"} <= results.keys():
        d = results["d"]["rate"]
        vs_a, vs_b = d / results["a"]["rate"], d / results["b"]["rate"]
        print()
        print(f"(d) vs (a): {vs_a:.1f}x (goal >= 6x: {'met' if vs_a >= 6 else 'MISSED'}); "
              f"(d) vs (b): {vs_b:.2f}x (goal >= 1.5x: {'met' if vs_b >= 1.5 else 'MISSED'})")
    print("peak RSS: resident-set high-water mark of the child process that ran the row "
          "(resource.getrusage ru_maxrss); 'above import': minus its RSS right after importing torch "
          "and cloudgan_core.gan (VmRSS), i.e. model, data, activations and I/O buffers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
