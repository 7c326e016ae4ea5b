"""Draw the README's pictures of one training pair from a training set (e.g. after ``make demo``).

    .venv/bin/python scripts/docs_pictures.py [storage/training_set] [docs]

Writes ``<docs>/composite-example.png`` (composite | cloud mask | shadow mask | surface, false
colour) and ``<docs>/band-strip.png`` (the same composite in S1 ... S9: S1-S6 reflectance on one
grey scale 0..1, S7-S9 brightness temperature on one grey scale, cold = dark) for the pair with the
most cloud and shadow among the first 200 of the ``train`` split.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image, ImageDraw

from cloudgan_core.clouds import false_color
from cloudgan_core.preview import grid


def _pick(ds: xr.Dataset) -> int:
    n = min(200, ds.sizes["pair"])
    cloud = ds["cloud_mask"][:n].mean(dim=("y", "x")).values
    shadow = ds["shadow_mask"][:n].mean(dim=("y", "x")).values
    score = np.minimum(cloud, 0.6) + 2 * shadow  # a cloud with a visible shadow, some clear sky left
    return int(np.argmax(score))


def _labelled(image: np.ndarray, labels: list[str], cell: int, gap: int = 4) -> Image.Image:
    img = Image.fromarray(image)
    out = Image.new("RGB", (img.width, img.height + 16), "white")
    out.paste(img, (0, 16))
    draw = ImageDraw.Draw(out)
    for i, label in enumerate(labels):
        draw.text((i * (cell + gap) + 2, 2), label, fill="black")
    return out


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else Path("storage/training_set")
    docs = Path(argv[1]) if len(argv) > 1 else Path("docs")
    with xr.open_dataset(src / "train.nc", engine="h5netcdf") as ds:
        i = _pick(ds)
        bands = ds["bands"][i].values.astype(np.float32)
        surface = ds["surface"][i].values.astype(np.float32)
        cloud = ds["cloud_mask"][i].values * 255
        shadow = ds["shadow_mask"][i].values * 255
        names = [str(b) for b in ds["band"].values]
    cell = 256
    row = [false_color(bands), cloud.astype(np.uint8), shadow.astype(np.uint8), false_color(surface)]
    _labelled(grid([row], cell), ["composite", "cloud mask", "shadow mask", "surface"], cell).save(
        docs / "composite-example.png", optimize=True)
    refl = np.clip(np.nan_to_num(bands[:6]), 0.0, 1.0) * 255
    bt = np.nan_to_num(bands[6:], nan=float(np.nanmin(bands[6:])))
    lo, hi = float(bt.min()), float(bt.max())
    therm = (bt - lo) / max(hi - lo, 1e-6) * 255
    planes = [p.astype(np.uint8) for p in (*refl, *therm)]
    strip_cell = 160
    labels = [f"{n} ({'refl.' if k < 6 else f'{lo:.0f}-{hi:.0f} K'})" for k, n in enumerate(names)]
    _labelled(grid([planes], strip_cell), labels, strip_cell).save(docs / "band-strip.png", optimize=True)
    print(f"pair {i + 1} of train.nc -> {docs / 'composite-example.png'}, {docs / 'band-strip.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
