"""The ``training_set`` stage: the export users train on, from every composites partition.

Files (``<root>/training_set/``; the original CloudGAN's layout plus provenance)::

    images/00001.png    composite (RGB)
    masks/00001.png     cloud mask, 0 = clear, 255 = cloud (greyscale)
    clouds/00001.png    the generated cloud behind images/00001.png
    surface/00001.png   the exact surface behind images/00001.png
    manifest.jsonl      one JSON line per pair (index, file, product, row, col, cloud_fraction 0..1,
                        surface_source, split, model_sha256, seed, blend)
    README.md           card: counts, splits, cover histogram, provenance
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
from cloudgan_core.cover import CoverFields, cover_histogram, histogram_markdown
from cloudgan_core.digests import file_digest
from cloudgan_core.errors import CloudGANError
from cloudgan_core.export import SPLITS, select_pairs, split_by_product
from cloudgan_core.preview import grid
from cloudgan_core.settings import MAX_COVER_BINS, check_count, check_fraction, check_split_fractions
from cloudgan_core.stages import composites
from cloudgan_core.stages.base import Markdown, Preview
from cloudgan_core.storage import asset_dir

NAME = "training_set"
#: Folder → the :class:`TrainingPair` field it holds, one PNG per pair.
PAIR_FOLDERS: dict[str, str] = {"images": "image", "masks": "mask", "clouds": "cloud", "surface": "surface"}
MANIFEST_NAME = "manifest.jsonl"
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
    cloud
        ``uint8 (H, W, 3)`` generated cloud.
    surface
        ``uint8 (H, W, 3)`` surface tile behind the composite.
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
    cloud: np.ndarray
    surface: np.ndarray
    product: str
    row: int
    col: int
    cloud_fraction: float
    surface_source: str
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
                **{f"{split}_pairs": s.split_counts[split] for split in SPLITS},
                "zip": s.zip_path, "split_products": s.split_products,
                "cover_histogram": Markdown(histogram_markdown(s.histogram))}

    def preview(self) -> Preview | None:
        if not self.sample:
            return None
        return Preview(grid([list(row) for row in self.sample], 96), "mask | cloud | surface | composite (first pairs)")


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
    mask = pair.mask
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise CloudGANError(f"{where}: mask must be an (H, W) array, got {getattr(mask, 'shape', None)}")
    if ((mask != 0) & (mask != 1)).any():
        raise CloudGANError(f"{where}: mask values must be 0 (clear) or 1 (cloud)")
    shapes = {pair.image.shape[:2], pair.cloud.shape[:2], pair.surface.shape[:2], mask.shape}
    if len(shapes) != 1:
        raise CloudGANError(f"{where}: image, mask, cloud and surface differ in size: {sorted(shapes)}")
    if tile_shape is not None and mask.shape != tile_shape:
        raise CloudGANError(f"{where}: tile size {mask.shape} differs from the set's {tile_shape}")
    if pair.split not in SPLITS:
        raise CloudGANError(f"{where}: split must be one of {SPLITS}, got {pair.split!r}")
    if not 0.0 <= float(pair.cloud_fraction) <= 1.0:
        raise CloudGANError(f"{where}: cloud_fraction must be within 0..1, got {pair.cloud_fraction}")


def _card(summary: TrainingSetSummary, model_sha256: str, seed: int, blend: str, extra_card: Mapping | None) -> str:
    tile = f"{summary.tile_shape[0]} x {summary.tile_shape[1]} px" if summary.tile_shape else "n/a"
    lines = ["# CloudGAN training set", "",
             "Synthetic cloudy images with exact cloud masks: generated clouds laid over cloud-free",
             "surface tiles. `images/N.png` pairs with `masks/N.png` (0 = clear, 255 = cloud);",
             "`clouds/N.png` and `surface/N.png` are the generated cloud and the surface behind it.",
             "`manifest.jsonl` has one line per pair.", "",
             "## Counts", "", f"- pairs: {summary.count}", f"- tile size: {tile}", "",
             "| split | pairs | products |", "|---|---:|---:|"]
    lines += [f"| {s} | {summary.split_counts[s]} | {len(summary.split_products[s])} |" for s in SPLITS]
    lines += ["", "No product appears in two splits.", "", "## Cloud cover", "", histogram_markdown(summary.histogram),
              "", "## Provenance", "", f"- generator model SHA-256: `{model_sha256}`", f"- seed: {seed}",
              f"- blend: {blend}"]
    for key in sorted(extra_card or {}):
        lines.append(f"- {key}: {json.dumps((extra_card or {})[key], sort_keys=True, default=str)}")
    lines += ["", "## Products per split", ""]
    for s in SPLITS:
        products = summary.split_products[s]
        lines.append(f"- {s}: {', '.join(products) if products else '(none)'}")
    return "\n".join(lines) + "\n"


def _write_zip(base: Path, zip_path: Path, names: list[str]) -> None:
    """Deterministic zip of ``names`` (relative to ``base``): sorted, fixed time and permissions.

    PNG entries are stored (they are compressed already), text entries deflated at level 6.
    """
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name in sorted(names):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            png = name.endswith(".png")
            info.compress_type = zipfile.ZIP_STORED if png else zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever machine writes it
            info.external_attr = (0o100644 & 0xFFFF) << 16
            zf.writestr(info, (base / name).read_bytes(), compresslevel=None if png else 6)


def write(root: Path, pairs: Iterable[TrainingPair], *, model_sha256: str, seed: int, blend: str,
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
    model_sha256
        SHA-256 of the generator weights that made the clouds (recorded per pair).
    seed
        The pipeline seed (recorded per pair).
    blend
        The composite blend (``"alpha"`` or ``"original"``), recorded per pair.
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
    with atomic_dir(dest) as tmp:
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
                raise CloudGANError(f"training pair {count}: product {product} is in split {pair.split!r} but an "
                                    f"earlier pair put it in {product_split[product]!r}; a product must stay in one "
                                    "split")
            file_name = f"{count:05d}.png"
            for name, attribute in PAIR_FOLDERS.items():
                array = getattr(pair, attribute)
                if name == "masks":
                    array = array.astype(np.uint8) * 255
                (tmp / name / file_name).write_bytes(_png_bytes(array))
                names.append(f"{name}/{file_name}")
            row = {"index": count, "file": file_name, "product": product, "row": int(pair.row), "col": int(pair.col),
                   "cloud_fraction": round(float(pair.cloud_fraction), 6), "surface_source": str(pair.surface_source),
                   "split": pair.split, "model_sha256": model_sha256, "seed": int(seed), "blend": blend}
            manifest_lines.append(json.dumps(row, sort_keys=True, separators=(",", ":")))
            split_counts[pair.split] += 1
            split_sets[pair.split].add(product)
            cover.append(100.0 * float(pair.cloud_fraction))
        summary = TrainingSetSummary(path=dest, count=count, split_counts=split_counts,
                                     split_products={s: sorted(split_sets[s]) for s in SPLITS},
                                     histogram=cover_histogram(cover), zip_path=dest / ZIP_NAME, zip_sha256="",
                                     tile_shape=tile_shape)
        (tmp / MANIFEST_NAME).write_text("".join(line + "\n" for line in manifest_lines), encoding="utf-8")
        (tmp / CARD_NAME).write_text(_card(summary, model_sha256, seed, blend, extra_card), encoding="utf-8")
        _write_zip(tmp, tmp / ZIP_NAME, names + [MANIFEST_NAME, CARD_NAME])
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

    def arrays(self, name: str) -> np.ndarray:
        """One folder's PNGs in manifest order: ``uint8 (N, H, W, 3)`` for ``images``, ``clouds``
        and ``surface``; ``uint8 (N, H, W)`` with 1 = cloud for ``masks`` (the 0/255 PNG / 255).

        Raises
        ------
        CloudGANError
            A file listed in the manifest is missing or unreadable, a mask holds values other
            than 0 and 255, or the tiles differ in size.
        """
        if name not in PAIR_FOLDERS:
            raise CloudGANError(f"{name!r} is not a folder of a training set ({', '.join(PAIR_FOLDERS)})")
        channels = 1 if name == "masks" else 3
        tiles = []
        for row in self.manifest:
            path = self.path / name / row["file"]
            tile = _read_png(path, channels)
            if name == "masks":
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

    def pairs() -> Iterator[TrainingPair]:
        for k, i in picked:
            p, r = parts[k], parts[k].index[i]
            yield TrainingPair(image=np.asarray(p.images[i]), mask=np.asarray(p.masks[i]),
                               cloud=np.asarray(p.clouds[i]), surface=np.asarray(p.surfaces[i]),
                               product=r["product"], row=r["row"], col=r["col"], cloud_fraction=r["cloud_fraction"],
                               surface_source=r["surface_source"], split=split[k])

    card = {"composite settings": settings,
            "selection": {"max_pairs": config.max_pairs, "cover_range": config.cover.label,
                          "balanced": config.balanced, "cover_bins": config.cover_bins,
                          "split_fractions": [config.train_fraction, config.val_fraction, config.test_fraction]},
            "candidates": len(candidates),
            "generator seeds": {k: p.summary.clouds_seed for k, p in nonempty.items()}}
    summary = write(root, pairs(), model_sha256=str(model_sha or ""), seed=config.seed, blend=str(blend or ""),
                    extra_card=card)
    sample = tuple(tuple(np.array(getattr(parts[k], a)[i]) for a in ("masks", "clouds", "surfaces", "images"))
                   for k, i in picked[:PREVIEW_ROWS])
    notes = () if picked else (f"the training set is empty: no composite pair in the cover range {config.cover.label}",)
    if config.max_cover <= 1.0:
        notes += (f"max_cover is {config.max_cover:g} %: min_cover and max_cover are percent (0..100), no longer "
                  "fractions (0..1)",)
    return TrainingSetResult(summary.path, summary, candidates=len(candidates), partitions=len(keys),
                             model_sha256=model_sha, blend=blend, sample=sample, notes=notes)
