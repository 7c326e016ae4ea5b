"""The ``training_set`` stage: the export users train on, from every composites partition.

Files (``<root>/training_set/``; the original CloudGAN's layout plus shadows, bands and provenance)::

    images/00001.png    composite, false colour (RGB: R = (S3+S5)/2, G = S3, B = (S3+S1)/2)
    masks/00001.png     cloud mask, 0 = clear, 255 = cloud (greyscale)
    shadows/00001.png   cloud-shadow mask, 0 = none, 255 = shadow on a clear pixel (greyscale)
    clouds/00001.png    the cloud behind images/00001.png as a picture (generator output)
    surface/00001.png   the exact surface behind images/00001.png
    train.nc, val.nc, test.nc
                        the nine bands of each split's composites and surfaces with the cloud,
                        shadow and snow masks (:class:`cloudgan_core.export.SplitNetCDF`; open with
                        ``xarray.open_dataset``)
    manifest.jsonl      one JSON line per pair (index, file, product, row, col, cloud_fraction 0..1,
                        shadow_fraction, surface_source, bands_source, split, generator,
                        model_sha256, seed, blend, shadows)
    README.md           card: files, netCDF variables, counts, splits, cover histogram, provenance
    training_set.zip    all of the above except itself

One number names a pair across all four folders. Numbers are zero-padded to five digits
(``00001``); a set of more than 99 999 pairs continues with six (``100000``).

Everything is deterministic (same pairs and settings give the same bytes, zip included) and the
set is replaced atomically (built in a temporary sibling folder, then swapped in). Which pairs go
in and which split each product lands in is :mod:`cloudgan_core.export`'s.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from cloudgan_core.atomic import atomic_dir, require_inputs
from cloudgan_core.clouds import BANDS
from cloudgan_core.cover import CoverFields, cover_histogram, histogram_markdown
from cloudgan_core.digests import file_digest
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import SPLITS, SplitNetCDF, select_pairs, split_by_product
from cloudgan_core.preview import grid
from cloudgan_core.settings import MAX_COVER_BINS, check_count, check_fraction, check_split_fractions
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS
from cloudgan_core.stages import composites
from cloudgan_core.stages.base import Markdown, Preview
from cloudgan_core.storage import asset_dir

NAME = "training_set"
#: Folder → the :class:`TrainingPair` field it holds, one PNG per pair.
PAIR_FOLDERS: dict[str, str] = {"images": "image", "masks": "mask", "shadows": "shadow", "clouds": "cloud",
                                 "surface": "surface"}
#: The folders holding 0/1 masks (stored as 0/255 greyscale PNGs).
MASK_FOLDERS = ("masks", "shadows")
MANIFEST_NAME = "manifest.jsonl"
#: The netCDF file of each split.
NETCDF_NAMES: dict[str, str] = {split: f"{split}.nc" for split in SPLITS}
CARD_NAME = "README.md"
ZIP_NAME = "training_set.zip"
PNG_COMPRESS_LEVEL = 6
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
#: Pairs (mask | cloud | surface | composite) in the preview.
PREVIEW_ROWS = 4


class TrainingSetConfig(CoverFields):
    """Which composites go into the set and how the products are split."""

    min_cover: float = Field(0.0, description="keep pairs with cloud cover above this (percent; 0 also keeps 0)")
    max_cover: float = Field(100.0, description="keep pairs with cloud cover at most this (percent)")
    max_pairs: Optional[int] = Field(None, description="at most this many pairs (None: no limit)")
    balanced: bool = Field(False, description="take the same number of pairs from every cover bin (with max_pairs: "
                                              "shared as evenly as the bins allow)")
    cover_bins: int = Field(10, description="number of equal-width cover bins over (min_cover, max_cover] for "
                                            f"balanced sampling (1..{MAX_COVER_BINS})")
    train_fraction: float = Field(0.8, description="share of products in train")
    val_fraction: float = Field(0.1, description="share of products in val")
    test_fraction: float = Field(0.1, description="share of products in test (no product is in two splits)")
    seed: int = Field(0, description="seed of the selection and the split (recorded in the manifest)")

    @field_validator("max_pairs")
    @classmethod
    def _max_pairs(cls, value: Optional[int]) -> Optional[int]:
        return None if value is None else check_count("max_pairs", value, 0)

    @field_validator("cover_bins")
    @classmethod
    def _cover_bins(cls, value: int) -> int:
        return check_count("cover_bins", value, 1, MAX_COVER_BINS)

    @field_validator("train_fraction", "val_fraction", "test_fraction")
    @classmethod
    def _share(cls, value: float, info: ValidationInfo) -> float:
        return check_fraction(info.field_name, value)

    @model_validator(mode="after")
    def _splits(self):
        check_split_fractions(self.train_fraction, self.val_fraction, self.test_fraction)
        return self


@dataclass(frozen=True)
class TrainingPair:
    """One composite with everything behind it.

    Attributes
    ----------
    image
        ``uint8 (H, W, 3)`` composite.
    mask
        ``uint8 (H, W)`` cloud mask, 1 = cloud, 0 = clear.
    shadow
        ``uint8 (H, W)`` cloud-shadow mask, 1 = shadow (on a clear pixel).
    cloud
        ``uint8 (H, W, 3)`` the cloud as a picture.
    surface
        ``uint8 (H, W, 3)`` surface tile behind the composite.
    bands, surface_bands
        ``float32 (9, H, W)`` the composite's and the surface's bands (S1-S6 reflectance, S7-S9 K).
    snow
        ``uint8 (H, W)`` the surface's snow/ice flag, 1 = snow or ice.
    product
        Product id the mask (and cloud) comes from.
    row, col
        Tile position in the product grid, pixels (top-left corner).
    cloud_fraction
        Share of cloudy pixels, 0..1.
    surface_source
        Where the surface comes from (e.g. ``"<product>:<row>:<col>"`` or ``"user:<file>"``).
    split
        ``"train"``, ``"val"`` or ``"test"``.
    """

    image: np.ndarray
    mask: np.ndarray
    shadow: np.ndarray
    cloud: np.ndarray
    surface: np.ndarray
    bands: np.ndarray
    surface_bands: np.ndarray
    snow: np.ndarray
    product: str
    row: int
    col: int
    cloud_fraction: float
    surface_source: str
    bands_source: str = "product"
    split: str = "train"


@dataclass(frozen=True)
class TrainingSetSummary:
    """What :func:`write` wrote.

    Attributes
    ----------
    path
        The training-set folder.
    count
        Number of pairs.
    split_counts
        Pairs per split (all three keys present).
    split_products
        Sorted product ids per split.
    histogram
        :func:`cloudgan_core.cover.cover_histogram` of the pairs' cover (percent).
    zip_path
        Path of ``training_set.zip``.
    zip_sha256
        SHA-256 (hex) of the zip.
    tile_shape
        ``(H, W)`` of the tiles, ``None`` for an empty set.
    """

    path: Path
    count: int
    split_counts: dict[str, int]
    split_products: dict[str, list[str]]
    histogram: dict[str, list]
    zip_path: Path
    zip_sha256: str
    tile_shape: tuple[int, int] | None = None


@dataclass(frozen=True)
class TrainingSetResult:
    """What :func:`build` made: the written set, how many candidate pairs and partitions it was
    chosen from, the generator and blend they share, and the first pairs for the preview."""

    path: Path
    summary: TrainingSetSummary
    candidates: int
    partitions: int
    model_sha256: str | None
    blend: str | None
    generator: str | None = None
    shadows: bool | None = None
    sample: tuple[tuple[np.ndarray, ...], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def zip_sha256(self) -> str:
        """SHA-256 of ``training_set.zip`` (the set's data version)."""
        return self.summary.zip_sha256

    def figures(self) -> dict[str, object]:
        s = self.summary
        return {"count": s.count, "candidates": self.candidates, "partitions": self.partitions,
                "zip_sha256": s.zip_sha256, "model_sha256": self.model_sha256, "blend": self.blend,
                "generator": self.generator, "shadows": self.shadows,
                **{f"{split}_pairs": s.split_counts[split] for split in SPLITS},
                "zip": s.zip_path, "split_products": s.split_products,
                "cover_histogram": Markdown(histogram_markdown(s.histogram))}

    def preview(self) -> Preview | None:
        if not self.sample:
            return None
        return Preview(grid([list(row) for row in self.sample], 96),
                       "mask | cloud | surface | composite | shadow (first pairs)")


def folder(root: Path) -> Path:
    """``<root>/training_set``."""
    return asset_dir(root, NAME)


# --------------------------------------------------------------------------- writing


def _png_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as PNG: no metadata, fixed compression, so same array → same bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL,
                                                      optimize=False)
    return buf.getvalue()


def _check_pair(pair: TrainingPair, number: int, tile_shape: tuple[int, int] | None) -> None:
    where = f"training pair {number} ({pair.product} row {pair.row} col {pair.col})"
    for name in ("image", "cloud", "surface"):
        arr = getattr(pair, name)
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            got = getattr(arr, "dtype", type(arr).__name__), getattr(arr, "shape", None)
            raise CloudGANError(f"{where}: {name} must be a uint8 (H, W, 3) array, got {got}")
    for name in ("mask", "shadow", "snow"):
        mask = getattr(pair, name)
        if not isinstance(mask, np.ndarray) or mask.ndim != 2:
            raise CloudGANError(f"{where}: {name} must be an (H, W) array, got {getattr(mask, 'shape', None)}")
        if ((mask != 0) & (mask != 1)).any():
            raise CloudGANError(f"{where}: {name} values must be 0 or 1")
    mask = pair.mask
    if (pair.mask.astype(bool) & pair.shadow.astype(bool)).any():
        raise CloudGANError(f"{where}: a pixel is both cloud and shadow")
    shapes = {pair.image.shape[:2], pair.cloud.shape[:2], pair.surface.shape[:2], mask.shape, pair.shadow.shape,
              pair.snow.shape}
    if len(shapes) != 1:
        raise CloudGANError(f"{where}: image, masks, cloud and surface differ in size: {sorted(shapes)}")
    for name in ("bands", "surface_bands"):
        arr = getattr(pair, name)
        if not isinstance(arr, np.ndarray) or arr.shape != (len(BANDS), *mask.shape):
            raise CloudGANError(f"{where}: {name} must be a ({len(BANDS)}, H, W) array, "
                                f"got {getattr(arr, 'shape', None)}")
    if tile_shape is not None and mask.shape != tile_shape:
        raise CloudGANError(f"{where}: tile size {mask.shape} differs from the set's {tile_shape}")
    if pair.split not in SPLITS:
        raise CloudGANError(f"{where}: split must be one of {SPLITS}, got {pair.split!r}")
    if not 0.0 <= float(pair.cloud_fraction) <= 1.0:
        raise CloudGANError(f"{where}: cloud_fraction must be within 0..1, got {pair.cloud_fraction}")


@dataclass(frozen=True)
class Provenance:
    """What made the set's pairs (recorded in every manifest line, the card and the netCDF)."""

    generator: str
    model_sha256: str
    seed: int
    blend: str
    shadows: bool


_CARD_FILES = """\
## Files

One number names a pair across all folders: `images/N.png` pairs with `masks/N.png`.

| file | what |
|---|---|
| `images/N.png` | the composite in false colour (RGB: R = (S3+S5)/2, G = S3, B = (S3+S1)/2, 8 bit) |
| `masks/N.png` | cloud mask: 0 = clear, 255 = cloud |
| `shadows/N.png` | cloud-shadow mask: 0 = none, 255 = shadow on a clear pixel (never also cloud) |
| `clouds/N.png` | the cloud alone as a picture (the GAN's output, or the procedural cloud over black) |
| `surface/N.png` | the exact clear surface behind the composite |
| `train.nc`, `val.nc`, `test.nc` | all nine bands of each split (below) |
| `manifest.jsonl` | one JSON line per pair: `index`, `file`, `product`, `row`, `col`, `cloud_fraction` (0..1), `shadow_fraction`, `surface_source`, `bands_source` (`product`, or `rgb` for a user image whose bands are approximated from its colours), `split`, `generator`, `model_sha256`, `seed`, `blend`, `shadows` |

Outside cloud ∪ shadow every pixel of `images/N.png` equals `surface/N.png` byte for byte, and
every band value in the netCDF equals the surface's: the masks are exact.

## netCDF (one file per split)

```python
import xarray as xr
ds = xr.open_dataset("train.nc")        # engine h5netcdf (netCDF-4 / HDF5)
ds.bands.sel(band="S8", pair=12)        # brightness temperature of pair 12, K
```

| variable | dims | type | meaning |
|---|---|---|---|
| `bands` | pair, band, y, x | float32 | the composite: S1-S6 top-of-atmosphere reflectance (units `1`), S7-S9 brightness temperature (`K`); NaN = no value |
| `surface` | pair, band, y, x | float32 | the clear surface behind it, same units |
| `cloud_mask` | pair, y, x | uint8 | 1 = cloud |
| `shadow_mask` | pair, y, x | uint8 | 1 = cloud shadow on a clear pixel |
| `snow_mask` | pair, y, x | uint8 | 1 = the surface pixel is flagged snow or ice |
| `pair` | pair | int32 | the pair number (the PNGs' `N`) |
| `band` | band | str | S1 ... S9 (0.555, 0.659, 0.865, 1.375, 1.61, 2.25, 3.74, 10.85, 12.0 µm: `wavelength_um`) |
| `band_units` | band | str | `1` (reflectance) for S1-S6, `K` for S7-S9 |
| `product` | pair | str | the Sentinel-3 product the cloud mask comes from |
| `surface_source` | pair | str | where the surface comes from (`<product>:<row>:<col>` or `user:<file>:<row>:<col>`) |

Global attributes: `generator` (`gan` or `procedural`), `model_sha256`, `blend`, `shadows`
(1 = cloud shadows cast, 0 = off), `split`.

Clouds are an optical-thickness field τ(x, y) with a cloud-top height, rendered over the surface's
nine bands with the surface tile's sun and view angles: S1-S6 through a two-stream cloud layer over
the surface, S7-S9 as a grey layer at the cloud-top temperature (lapse rate from the surface), the
shadow projected along the sun azimuth at the cloud-top height (`cloudgan_core.clouds`).
"""


def _card(summary: TrainingSetSummary, provenance: Provenance, extra_card: Mapping | None) -> str:
    tile = f"{summary.tile_shape[0]} x {summary.tile_shape[1]} px" if summary.tile_shape else "n/a"
    lines = ["# CloudGAN training set", "",
             "Synthetic cloudy images with exact cloud and shadow masks: clouds rendered in all nine SLSTR",
             "bands over cloud-free surface tiles.", "", _CARD_FILES,
             "## Counts", "", f"- pairs: {summary.count}", f"- tile size: {tile}", "",
             "| split | pairs | products |", "|---|---:|---:|"]
    lines += [f"| {s} | {summary.split_counts[s]} | {len(summary.split_products[s])} |" for s in SPLITS]
    lines += ["", "No product appears in two splits.", "", "## Cloud cover", "", histogram_markdown(summary.histogram),
              "", "## Provenance", "", f"- generator: {provenance.generator}",
              f"- generator model SHA-256: `{provenance.model_sha256}`", f"- seed: {provenance.seed}",
              f"- blend: {provenance.blend}", f"- shadows: {'on' if provenance.shadows else 'off'}"]
    for key in sorted(extra_card or {}):
        lines.append(f"- {key}: {json.dumps((extra_card or {})[key], sort_keys=True, default=str)}")
    lines += ["", "## Products per split", ""]
    for s in SPLITS:
        products = summary.split_products[s]
        lines.append(f"- {s}: {', '.join(products) if products else '(none)'}")
    return "\n".join(lines) + "\n"


def _write_zip(base: Path, zip_path: Path, names: list[str]) -> None:
    """Deterministic zip of ``names`` (relative to ``base``): sorted, fixed time and permissions.

    PNG and netCDF entries are stored (they are compressed already), text entries deflated at level 6.
    """
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name in sorted(names):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            packed = name.endswith((".png", ".nc"))
            info.compress_type = zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever machine writes it
            info.external_attr = (0o100644 & 0xFFFF) << 16
            zf.writestr(info, (base / name).read_bytes(), compresslevel=None if packed else 6)


def write(root: Path, pairs: Iterable[TrainingPair], *, provenance: Provenance,
          extra_card: Mapping[str, Any] | None = None) -> TrainingSetSummary:
    """Write the training set, replacing any previous set atomically.

    Pairs are numbered 1, 2, … in the order given. The set is built in a temporary sibling folder
    and swapped in only when complete; if anything fails (including the ``pairs`` iterator
    raising) the previous set stays as it was and the temporary folder is removed.

    Parameters
    ----------
    root
        Storage root (the set goes to ``<root>/training_set``).
    pairs
        The pairs, in order (any iterable; consumed once, one pair in memory at a time).
    provenance
        Generator, its model's SHA-256, the pipeline seed, the blend and whether shadows are on
        (recorded per pair, in the card and in the netCDF attributes).
    extra_card
        More ``key: value`` lines for the README card (e.g. composite settings). Values must be
        JSON-serialisable (others are written with ``str``).
    """
    dest = folder(root)
    count = 0
    split_counts = {s: 0 for s in SPLITS}
    split_sets: dict[str, set[str]] = {s: set() for s in SPLITS}
    product_split: dict[str, str] = {}
    cover: list[float] = []
    tile_shape: tuple[int, int] | None = None
    p = provenance
    attrs = {"generator": p.generator, "model_sha256": p.model_sha256, "blend": p.blend,
             "shadows": np.int8(bool(p.shadows))}
    writers: dict[str, SplitNetCDF] = {}
    with atomic_dir(dest) as tmp:
        try:
            for name in PAIR_FOLDERS:
                (tmp / name).mkdir()
            manifest_lines: list[str] = []
            names: list[str] = []
            for pair in pairs:
                count += 1
                _check_pair(pair, count, tile_shape)
                tile_shape = (int(pair.mask.shape[0]), int(pair.mask.shape[1]))
                product = str(pair.product)
                if product_split.setdefault(product, pair.split) != pair.split:
                    raise CloudGANError(f"training pair {count}: product {product} is in split {pair.split!r} but "
                                        f"an earlier pair put it in {product_split[product]!r}; a product must stay "
                                        "in one split")
                file_name = f"{count:05d}.png"
                for name, attribute in PAIR_FOLDERS.items():
                    array = getattr(pair, attribute)
                    if name in MASK_FOLDERS:
                        array = array.astype(np.uint8) * 255
                    (tmp / name / file_name).write_bytes(_png_bytes(array))
                    names.append(f"{name}/{file_name}")
                if pair.split not in writers:
                    writers[pair.split] = SplitNetCDF(tmp / NETCDF_NAMES[pair.split], tile_shape,
                                                      {**attrs, "split": pair.split})
                writers[pair.split].append(count, product, str(pair.surface_source), pair.bands, pair.surface_bands,
                                           pair.mask, pair.shadow, pair.snow)
                row = {"index": count, "file": file_name, "product": product, "row": int(pair.row),
                       "col": int(pair.col), "cloud_fraction": round(float(pair.cloud_fraction), 6),
                       "shadow_fraction": round(float(pair.shadow.mean()), 6),
                       "surface_source": str(pair.surface_source), "bands_source": str(pair.bands_source),
                       "split": pair.split, "generator": p.generator, "model_sha256": p.model_sha256,
                       "seed": int(p.seed), "blend": p.blend, "shadows": bool(p.shadows)}
                manifest_lines.append(json.dumps(row, sort_keys=True, separators=(",", ":")))
                split_counts[pair.split] += 1
                split_sets[pair.split].add(product)
                cover.append(100.0 * float(pair.cloud_fraction))
            for split in SPLITS:  # every split has its file, an empty one too
                if split not in writers:
                    writers[split] = SplitNetCDF(tmp / NETCDF_NAMES[split], tile_shape or (0, 0),
                                                 {**attrs, "split": split})
        finally:
            for w in writers.values():
                w.close()
        summary = TrainingSetSummary(path=dest, count=count, split_counts=split_counts,
                                     split_products={s: sorted(split_sets[s]) for s in SPLITS},
                                     histogram=cover_histogram(cover), zip_path=dest / ZIP_NAME, zip_sha256="",
                                     tile_shape=tile_shape)
        (tmp / MANIFEST_NAME).write_text("".join(line + "\n" for line in manifest_lines), encoding="utf-8")
        (tmp / CARD_NAME).write_text(_card(summary, provenance, extra_card), encoding="utf-8")
        _write_zip(tmp, tmp / ZIP_NAME, names + [MANIFEST_NAME, CARD_NAME, *NETCDF_NAMES.values()])
        digest = file_digest(tmp / ZIP_NAME)
    return replace(summary, zip_sha256=digest)


# --------------------------------------------------------------------------- reading


def _read_png(path: Path, channels: int) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise CloudGANError(f"{path}: missing (listed in the manifest)")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except OSError as exc:
        raise CloudGANError(f"{path}: cannot read as a PNG ({exc})") from None
    want = 3 if channels == 3 else 2
    if arr.ndim != want or (channels == 3 and arr.shape[2] != 3):
        raise CloudGANError(f"{path}: expected {'RGB' if channels == 3 else 'greyscale'}, got {arr.shape}")
    return arr


@dataclass(frozen=True)
class TrainingSetData:
    """A training set on disk: its ``manifest`` rows (in pair order) and its PNGs, read on demand.

    Attributes
    ----------
    path
        The training-set folder.
    manifest
        One dict per pair (see the module docstring).
    """

    path: Path
    manifest: list[dict[str, Any]]

    @property
    def zip_path(self) -> Path:
        return self.path / ZIP_NAME

    def zip_sha256(self) -> str:
        """SHA-256 of ``training_set.zip``."""
        return file_digest(self.zip_path)

    def numbers(self) -> dict[str, list[int]]:
        """Pair numbers found in each folder (from the PNG file names) and in the manifest, sorted:
        keys ``images``, ``masks``, ``clouds``, ``surface``, ``manifest``.

        Raises
        ------
        CloudGANError
            A PNG's name is not a pair number.
        """
        out: dict[str, list[int]] = {}
        for name in PAIR_FOLDERS:
            found = []
            for p in sorted((self.path / name).glob("*.png")):
                if not p.stem.isdigit():
                    raise CloudGANError(f"{p}: file name is not a pair number")
                found.append(int(p.stem))
            out[name] = sorted(found)
        out["manifest"] = sorted(int(r["index"]) for r in self.manifest)
        return out

    def stored(self, name: str, numbers: Sequence[int]) -> list[np.ndarray]:
        """The PNGs ``<name>/<number>.png`` as stored (no conversion), for the alignment check."""
        from PIL import Image

        def png(path: Path) -> np.ndarray:
            with Image.open(path) as im:
                return np.asarray(im)

        return [png(self.path / name / f"{k:05d}.png") for k in numbers]

    def arrays(self, name: str, limit: int | None = None) -> np.ndarray:
        """One folder's PNGs in manifest order (the first ``limit`` pairs, or all): ``uint8
        (N, H, W, 3)`` for ``images``, ``clouds`` and ``surface``; ``uint8 (N, H, W)`` with 1 = cloud
        (shadow) for ``masks`` (``shadows``), the 0/255 PNG / 255.

        Raises
        ------
        CloudGANError
            A file listed in the manifest is missing or unreadable, a mask holds values other
            than 0 and 255, or the tiles differ in size.
        """
        if name not in PAIR_FOLDERS:
            raise CloudGANError(f"{name!r} is not a folder of a training set ({', '.join(PAIR_FOLDERS)})")
        channels = 1 if name in MASK_FOLDERS else 3
        tiles = []
        for row in self.manifest[:limit]:
            path = self.path / name / row["file"]
            tile = _read_png(path, channels)
            if name in MASK_FOLDERS:
                if ((tile != 0) & (tile != 255)).any():
                    raise CloudGANError(f"{path}: mask values must be 0 or 255")
                tile = (tile // 255).astype(np.uint8)
            tiles.append(tile)
        if not tiles:
            return np.zeros((0, 0, 0, 3) if channels == 3 else (0, 0, 0), np.uint8)
        shapes = {t.shape for t in tiles}
        if len(shapes) != 1:
            raise CloudGANError(f"{self.path / name}: tiles differ in size: {sorted(shapes)}")
        return np.stack(tiles)

    def netcdf(self, variables: Sequence[str], limit: int | None = None) -> dict[str, np.ndarray]:
        """Variables of the split netCDF files (``bands``, ``surface``, ``cloud_mask``,
        ``shadow_mask``, ``snow_mask``) for the first ``limit`` pairs of the manifest (or all), in
        manifest order, stacked along the pair axis.

        Raises
        ------
        CloudGANError
            A split's file is missing or unreadable, or lacks a pair of the manifest.
        """
        import xarray as xr

        rows = self.manifest[:limit]
        out: dict[str, list[np.ndarray]] = {v: [None] * len(rows) for v in variables}  # type: ignore[list-item]
        for split in SPLITS:
            wanted = [(k, int(r["index"])) for k, r in enumerate(rows) if r.get("split") == split]
            if not wanted:
                continue
            path = self.path / NETCDF_NAMES[split]
            try:
                with xr.open_dataset(path, engine="h5netcdf") as ds:
                    position = {int(n): j for j, n in enumerate(ds["pair"].values)}
                    missing = [n for _, n in wanted if n not in position]
                    if missing:
                        raise CloudGANError(f"{path}: no pair {missing[0]} (listed in the manifest)")
                    take = [position[n] for _, n in wanted]
                    for v in variables:
                        values = ds[v].isel(pair=take).values
                        for (k, _), arr in zip(wanted, values):
                            out[v][k] = arr
            except (OSError, KeyError, ValueError) as exc:
                raise CloudGANError(f"{path}: cannot read ({type(exc).__name__}: {exc}); materialize training_set "
                                    "again") from None
        return {v: np.stack(arrs) if arrs else np.zeros((0,), np.float32) for v, arrs in out.items()}


def read(root: Path) -> TrainingSetData:
    """The training set's manifest (its PNGs are read through :class:`TrainingSetData`).

    Raises
    ------
    MissingInputError
        No training set ("materialize training_set first").
    CloudGANError
        The manifest is missing, or a line of it is not JSON with an ``index`` and a ``file``.
    """
    path = folder(root)
    require_inputs(training_set=path)
    manifest = path / MANIFEST_NAME
    if not manifest.is_file():
        raise CloudGANError(f"{manifest}: no manifest; materialize training_set again")
    rows = []
    for k, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            number = int(row["index"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CloudGANError(f"{manifest}: line {k} is not a pair record ({type(exc).__name__})") from None
        if row.get("file") != f"{number:05d}.png":
            raise CloudGANError(f"{manifest}: line {k} names file {row.get('file')!r}, expected {number:05d}.png")
        rows.append(row)
    return TrainingSetData(path, rows)


# --------------------------------------------------------------------------- build


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


def build(root: Path, config: TrainingSetConfig = TrainingSetConfig(), *,
          products: Sequence[str] = ()) -> TrainingSetResult:
    """Select pairs from the composites of ``products``, split them by product, write the set.

    Same composites and config give the same ``training_set.zip`` bytes, whatever the order of
    ``products``.

    Raises
    ------
    MissingInputError
        A product's composites are missing.
    CloudGANError
        Non-empty partitions differ in generator model, blend or composite settings, or a
        partition is unreadable.
    """
    keys = sorted(set(products))
    parts = {k: composites.read(root, k) for k in keys}
    nonempty = {k: p for k, p in parts.items() if p.index}
    model_sha = _shared_value({k: p.summary.model_sha256 for k, p in nonempty.items()},
                              "generator model (model_sha256)")
    blend = _shared_value({k: p.summary.blend for k, p in nonempty.items()}, "blend")
    settings = _shared_value({k: p.summary.settings() for k, p in nonempty.items()}, "composite settings")
    candidates = [(k, i) for k in keys for i in range(len(parts[k].index))]
    cover = np.array([100.0 * parts[k].index[i]["cloud_fraction"] for k, i in candidates], dtype=np.float64)
    chosen = select_pairs(cover, config.cover_bins, max_pairs=config.max_pairs, cover_range=config.cover,
                          balanced=config.balanced, seed=config.seed)
    picked = [candidates[j] for j in chosen.tolist()]
    split = split_by_product(sorted({k for k, _ in picked}), seed=config.seed,
                             fractions=(config.train_fraction, config.val_fraction, config.test_fraction))

    snow_bit = np.uint16(PIXEL_FLAG_BITS["snow"])

    def pairs() -> Iterator[TrainingPair]:
        for k, i in picked:
            p, r = parts[k], parts[k].index[i]
            yield TrainingPair(image=np.asarray(p.images[i]), mask=np.asarray(p.masks[i]),
                               shadow=np.asarray(p.shadows[i]), cloud=np.asarray(p.clouds[i]),
                               surface=np.asarray(p.surfaces[i]), bands=np.asarray(p.bands[i]),
                               surface_bands=np.asarray(p.surface_bands[i]),
                               snow=((np.asarray(p.surface_flags[i]) & snow_bit) != 0).view(np.uint8),
                               product=r["product"], row=r["row"], col=r["col"], cloud_fraction=r["cloud_fraction"],
                               surface_source=r["surface_source"], bands_source=str(r["bands_source"]),
                               split=split[k])

    card = {"composite settings": settings,
            "selection": {"max_pairs": config.max_pairs, "cover_range": config.cover.label,
                          "balanced": config.balanced, "cover_bins": config.cover_bins,
                          "split_fractions": [config.train_fraction, config.val_fraction, config.test_fraction]},
            "candidates": len(candidates),
            "generator seeds": {k: p.summary.clouds_seed for k, p in nonempty.items()}}
    shared = settings if isinstance(settings, dict) else {}
    provenance = Provenance(generator=str(shared.get("generator", "")), model_sha256=str(model_sha or ""),
                            seed=config.seed, blend=str(blend or ""), shadows=bool(shared.get("shadows", False)))
    summary = write(root, pairs(), provenance=provenance, extra_card=card)
    sample = tuple(tuple(np.array(getattr(parts[k], a)[i]) for a in ("masks", "clouds", "surfaces", "images", "shadows"))
                   for k, i in picked[:PREVIEW_ROWS])
    notes = () if picked else (f"the training set is empty: no composite pair in the cover range {config.cover.label}",)
    if config.max_cover <= 1.0:
        notes += (f"max_cover is {config.max_cover:g} %: min_cover and max_cover are percent (0..100), no longer "
                  "fractions (0..1)",)
    return TrainingSetResult(summary.path, summary, candidates=len(candidates), partitions=len(keys),
                             model_sha256=model_sha, blend=blend, generator=provenance.generator or None,
                             shadows=shared.get("shadows"), sample=sample, notes=notes)
