"""The training set users train on: PNG pairs, a manifest, a card and one zip.

Layout under the destination folder (the original CloudGAN's, plus provenance)::

    images/00001.png    composite (RGB)
    masks/00001.png     cloud mask, 0 = clear, 255 = cloud (greyscale)
    clouds/00001.png    the generated cloud behind images/00001.png
    surface/00001.png   the exact surface behind images/00001.png
    manifest.jsonl      one JSON line per pair (index, file, product, row, col, cloud_fraction,
                        surface_source, split, model_sha256, seed, blend)
    README.md           card: counts, splits, cover histogram, provenance
    training_set.zip    all of the above except itself

One number names a pair across all four folders. Numbers are zero-padded to five digits
(``00001``); a set of more than 99 999 pairs continues with six (``100000``).

Everything is deterministic (same pairs and settings give the same bytes, zip included) and the
set is replaced atomically (built in a temporary sibling folder, then swapped in).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloudgan_core.atomic import atomic_dir
from cloudgan_core.errors import CloudGANError

SPLITS: tuple[str, ...] = ("train", "val", "test")
PAIR_FOLDERS: tuple[str, ...] = ("images", "masks", "clouds", "surface")
MANIFEST_NAME = "manifest.jsonl"
CARD_NAME = "README.md"
ZIP_NAME = "training_set.zip"
PNG_COMPRESS_LEVEL = 6
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
COVER_BIN_EDGES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


# --------------------------------------------------------------------------- records


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
    """What :func:`write_training_set` wrote.

    Attributes
    ----------
    dest
        The training-set folder.
    count
        Number of pairs.
    split_counts
        Pairs per split (all three keys present).
    split_products
        Sorted product ids per split.
    histogram
        Cover histogram: ``edges`` (11, 0..1) and ``counts`` (10).
    zip_path
        Path of ``training_set.zip``.
    zip_sha256
        SHA-256 (hex) of the zip.
    tile_shape
        ``(H, W)`` of the tiles, ``None`` for an empty set.
    """

    dest: Path
    count: int
    split_counts: dict[str, int]
    split_products: dict[str, list[str]]
    histogram: dict[str, list]
    zip_path: Path
    zip_sha256: str
    tile_shape: tuple[int, int] | None = None

    def as_metadata(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (paths as strings) for materialization metadata."""
        return {
            "dest": str(self.dest),
            "count": self.count,
            "split_counts": dict(self.split_counts),
            "split_products": {k: list(v) for k, v in self.split_products.items()},
            "histogram": {k: list(v) for k, v in self.histogram.items()},
            "zip_path": str(self.zip_path),
            "zip_sha256": self.zip_sha256,
            "tile_shape": list(self.tile_shape) if self.tile_shape else None,
        }


# --------------------------------------------------------------------------- splits and selection


def split_by_product(
    products: Sequence[str],
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int,
) -> dict[str, str]:
    """Assign whole products to train / val / test, so no product lands in two splits.

    The distinct products are sorted, shuffled with ``seed`` and cut in that order into train,
    val and test. Counts are ``round(n · fraction)`` for val and test, then adjusted so that:
    train always gets at least one product; test gets one as soon as there are two products
    (and its fraction is > 0); val gets one as soon as there are three (and its fraction is > 0).
    So 1 product → train; 2 → train + test; 3 → one each; 10 at 0.8/0.1/0.1 → 8/1/1.

    Parameters
    ----------
    products
        Product ids (repeats allowed; order does not matter).
    fractions
        Shares of train, val, test; non-negative, summing to 1, train > 0.
    seed
        Seed of the shuffle.

    Returns
    -------
    dict
        Product id → ``"train"`` | ``"val"`` | ``"test"``.
    """
    if len(fractions) != 3:
        raise CloudGANError(f"split fractions must be (train, val, test), got {fractions}")
    f_train, f_val, f_test = (float(x) for x in fractions)
    if min(f_train, f_val, f_test) < 0 or abs(f_train + f_val + f_test - 1.0) > 1e-6:
        raise CloudGANError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    if f_train <= 0:
        raise CloudGANError(f"the train fraction must be > 0, got {fractions}")
    unique = sorted({str(p) for p in products})
    n = len(unique)
    if n == 0:
        return {}
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [unique[i] for i in order]
    n_test = int(round(n * f_test))
    n_val = int(round(n * f_val))
    if f_test > 0 and n >= 2:
        n_test = max(n_test, 1)
    if f_val > 0 and n >= 3:
        n_val = max(n_val, 1)
    while n_val + n_test > n - 1:  # keep at least one train product; val gives way first
        if n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    n_train = n - n_val - n_test
    out: dict[str, str] = {}
    for k, product in enumerate(shuffled):
        out[product] = "train" if k < n_train else ("val" if k < n_train + n_val else "test")
    return out


def _bin_edges(bins: int | Sequence[float], cover_range: tuple[float, float]) -> np.ndarray:
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise CloudGANError(f"bins must be >= 1, got {bins}")
        return np.linspace(cover_range[0], cover_range[1], int(bins) + 1)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise CloudGANError(f"bin edges must be increasing with at least two values, got {bins}")
    return edges


def _fill_evenly(counts: list[int], total: int) -> list[int]:
    """Share ``total`` across bins as evenly as their sizes allow (water-filling).

    Bins smaller than the even share give all they have; the rest is split equally among the
    others, left-over units going to the lowest bins first.
    """
    take = [0] * len(counts)
    active = [b for b, c in enumerate(counts) if c > 0]
    remaining = total
    while active and remaining > 0:
        share = remaining // len(active)
        small = [b for b in active if counts[b] - take[b] <= share]
        if small and share > 0:
            for b in small:
                remaining -= counts[b] - take[b]
                take[b] = counts[b]
            active = [b for b in active if b not in small]
            continue
        if share == 0:
            for b in active[:remaining]:
                take[b] += 1
            remaining = 0
            break
        for b in active:
            take[b] += share
        remaining -= share * len(active)
    return take


def select_pairs(
    cloud_fractions: Sequence[float] | np.ndarray,
    bins: int | Sequence[float] = 10,
    *,
    max_pairs: int | None = None,
    cover_range: tuple[float, float] = (0.0, 1.0),
    balanced: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Choose which candidate pairs go into the training set.

    1. Keep candidates whose cloud fraction lies in ``cover_range`` (both ends included).
    2. Not ``balanced``: keep all of them, or a seeded random ``max_pairs`` of them.
       ``balanced``: put them into cover bins and take the same number from every non-empty bin
       (a seeded random choice within each bin). With ``max_pairs`` the total is shared as evenly
       as the bins allow (a bin with too few gives all it has, the others make up the rest);
       without it every non-empty bin gives as many as the smallest non-empty bin has.

    Parameters
    ----------
    cloud_fractions
        Cloud fraction (0..1) of every candidate.
    bins
        Number of equal-width cover bins over ``cover_range``, or explicit increasing edges (the
        last bin includes its upper edge; fractions outside the edges are dropped when balanced).
    max_pairs
        Upper limit on the number chosen; ``None``: no limit.
    cover_range
        ``(low, high)`` cloud fractions kept.
    balanced
        Sample evenly across cover bins.
    seed
        Seed of the random choices.

    Returns
    -------
    numpy.ndarray
        ``int64`` indices into ``cloud_fractions``, ascending.
    """
    f = np.asarray(cloud_fractions, dtype=np.float64).ravel()
    low, high = float(cover_range[0]), float(cover_range[1])
    if not low <= high:
        raise CloudGANError(f"cover_range must be (low, high) with low <= high, got {cover_range}")
    if max_pairs is not None and max_pairs < 0:
        raise CloudGANError(f"max_pairs must be >= 0, got {max_pairs}")
    keep = np.flatnonzero((f >= low) & (f <= high))  # NaN fails both comparisons
    rng = np.random.default_rng(seed)
    if not balanced:
        if max_pairs is None or max_pairs >= keep.size:
            return keep.astype(np.int64)
        return np.sort(rng.choice(keep, size=max_pairs, replace=False)).astype(np.int64)
    edges = _bin_edges(bins, (low, high))
    fk = f[keep]
    which = np.searchsorted(edges, fk, side="right") - 1
    which[fk == edges[-1]] = edges.size - 2
    inside = (which >= 0) & (which < edges.size - 1)
    keep, which = keep[inside], which[inside]
    members = [keep[which == b] for b in range(edges.size - 1)]
    counts = [m.size for m in members]
    nonempty = [c for c in counts if c > 0]
    if not nonempty:
        return np.zeros(0, dtype=np.int64)
    total = len(nonempty) * min(nonempty) if max_pairs is None else min(max_pairs, sum(counts))
    take = _fill_evenly(counts, total)
    chosen = [rng.permutation(m)[:t] for m, t in zip(members, take, strict=True) if t > 0]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --------------------------------------------------------------------------- writing


def _png_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as PNG: no metadata, fixed compression, so same array → same bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False
    )
    return buf.getvalue()


def _check_pair(pair: TrainingPair, number: int, tile_shape: tuple[int, int] | None) -> None:
    where = f"training pair {number} ({pair.product} row {pair.row} col {pair.col})"
    for name in ("image", "cloud", "surface"):
        arr = getattr(pair, name)
        if (
            not isinstance(arr, np.ndarray)
            or arr.dtype != np.uint8
            or arr.ndim != 3
            or arr.shape[2] != 3
        ):
            got = getattr(arr, "dtype", type(arr).__name__), getattr(arr, "shape", None)
            raise CloudGANError(f"{where}: {name} must be a uint8 (H, W, 3) array, got {got}")
    mask = pair.mask
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise CloudGANError(
            f"{where}: mask must be an (H, W) array, got {getattr(mask, 'shape', None)}"
        )
    if ((mask != 0) & (mask != 1)).any():
        raise CloudGANError(f"{where}: mask values must be 0 (clear) or 1 (cloud)")
    shapes = {pair.image.shape[:2], pair.cloud.shape[:2], pair.surface.shape[:2], mask.shape}
    if len(shapes) != 1:
        raise CloudGANError(
            f"{where}: image, mask, cloud and surface differ in size: {sorted(shapes)}"
        )
    if tile_shape is not None and mask.shape != tile_shape:
        raise CloudGANError(f"{where}: tile size {mask.shape} differs from the set's {tile_shape}")
    if pair.split not in SPLITS:
        raise CloudGANError(f"{where}: split must be one of {SPLITS}, got {pair.split!r}")
    if not 0.0 <= float(pair.cloud_fraction) <= 1.0:
        raise CloudGANError(
            f"{where}: cloud_fraction must be within 0..1, got {pair.cloud_fraction}"
        )


def cover_histogram(cloud_fractions: Sequence[float] | np.ndarray) -> dict[str, list]:
    """Counts of cloud fractions in 10 % bins ``[0, 0.1), …, [0.9, 1.0]`` (last bin closed)."""
    f = np.asarray(cloud_fractions, dtype=np.float64).ravel()
    if np.isnan(f).any():
        raise CloudGANError("cloud fractions contain NaN; no cover histogram")
    f = np.clip(f, 0.0, 1.0)
    counts, _ = np.histogram(f, bins=np.asarray(COVER_BIN_EDGES))
    return {"edges": list(COVER_BIN_EDGES), "counts": [int(c) for c in counts]}


def _card(
    count: int,
    split_counts: dict[str, int],
    split_products: dict[str, list[str]],
    histogram: dict[str, list],
    tile_shape: tuple[int, int] | None,
    model_sha256: str,
    seed: int,
    blend: str,
    extra_card: dict | None,
) -> str:
    lines = [
        "# CloudGAN training set",
        "",
        "Synthetic cloudy images with exact cloud masks: generated clouds laid over cloud-free",
        "surface tiles. `images/N.png` pairs with `masks/N.png` (0 = clear, 255 = cloud);",
        "`clouds/N.png` and `surface/N.png` are the generated cloud and the surface behind it.",
        "`manifest.jsonl` has one line per pair.",
        "",
        "## Counts",
        "",
        f"- pairs: {count}",
        f"- tile size: {f'{tile_shape[0]} x {tile_shape[1]} px' if tile_shape else 'n/a'}",
        "",
        "| split | pairs | products |",
        "|---|---:|---:|",
    ]
    for s in SPLITS:
        lines.append(f"| {s} | {split_counts[s]} | {len(split_products[s])} |")
    lines += [
        "",
        "No product appears in two splits.",
        "",
        "## Cloud cover",
        "",
        "| cover | pairs |",
        "|---|---:|",
    ]
    edges, counts = histogram["edges"], histogram["counts"]
    for k, c in enumerate(counts):
        close = "]" if k == len(counts) - 1 else ")"
        lines.append(f"| [{edges[k] * 100:.0f} %, {edges[k + 1] * 100:.0f} %{close} | {c} |")
    lines += [
        "",
        "## Provenance",
        "",
        f"- generator model SHA-256: `{model_sha256}`",
        f"- seed: {seed}",
        f"- blend: {blend}",
    ]
    for key in sorted(extra_card or {}):
        lines.append(f"- {key}: {json.dumps((extra_card or {})[key], sort_keys=True, default=str)}")
    lines += ["", "## Products per split", ""]
    for s in SPLITS:
        lines.append(f"- {s}: {', '.join(split_products[s]) if split_products[s] else '(none)'}")
    return "\n".join(lines) + "\n"


def _write_zip(root: Path, zip_path: Path, names: list[str]) -> None:
    """Deterministic zip of ``names`` (relative to ``root``): sorted, fixed time and permissions.

    PNG entries are stored (they are compressed already), text entries deflated at level 6.
    """
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name in sorted(names):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            # PNGs are already deflated: store them; deflate the text files
            png = name.endswith(".png")
            info.compress_type = zipfile.ZIP_STORED if png else zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever machine writes it
            info.external_attr = (0o100644 & 0xFFFF) << 16
            zf.writestr(info, (root / name).read_bytes(), compresslevel=None if png else 6)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_training_set(
    dest: str | Path,
    pairs: Iterable[TrainingPair],
    *,
    model_sha256: str,
    seed: int,
    blend: str,
    extra_card: dict | None = None,
) -> TrainingSetSummary:
    """Write the training set to ``dest``, replacing any previous set there atomically.

    Pairs are numbered 1, 2, … in the order given. The set is built in a temporary sibling
    folder and swapped in only when complete; if anything fails (including the ``pairs``
    iterator raising) the previous set stays as it was and the temporary folder is removed.

    Parameters
    ----------
    dest
        Training-set folder (created or replaced).
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

    Returns
    -------
    TrainingSetSummary
        Counts, split counts and products, cover histogram, zip path and SHA-256.
    """
    dest = Path(dest)
    count = 0
    split_counts = {s: 0 for s in SPLITS}
    split_sets: dict[str, set[str]] = {s: set() for s in SPLITS}
    product_split: dict[str, str] = {}
    fractions: list[float] = []
    tile_shape: tuple[int, int] | None = None
    with atomic_dir(dest) as tmp:
        for folder in PAIR_FOLDERS:
            (tmp / folder).mkdir()
        manifest_lines: list[str] = []
        names: list[str] = []
        for pair in pairs:
            count += 1
            _check_pair(pair, count, tile_shape)
            tile_shape = tuple(pair.mask.shape)  # type: ignore[assignment]
            product = str(pair.product)
            if product_split.setdefault(product, pair.split) != pair.split:
                raise CloudGANError(
                    f"training pair {count}: product {product} is in split {pair.split!r} but an "
                    f"earlier pair put it in {product_split[product]!r}; "
                    "a product must stay in one split"
                )
            file_name = f"{count:05d}.png"
            payloads = {
                "images": pair.image,
                "masks": (pair.mask.astype(np.uint8) * 255),
                "clouds": pair.cloud,
                "surface": pair.surface,
            }
            for folder, arr in payloads.items():
                (tmp / folder / file_name).write_bytes(_png_bytes(arr))
                names.append(f"{folder}/{file_name}")
            row = {
                "index": count,
                "file": file_name,
                "product": product,
                "row": int(pair.row),
                "col": int(pair.col),
                "cloud_fraction": round(float(pair.cloud_fraction), 6),
                "surface_source": str(pair.surface_source),
                "split": pair.split,
                "model_sha256": model_sha256,
                "seed": int(seed),
                "blend": blend,
            }
            manifest_lines.append(json.dumps(row, sort_keys=True, separators=(",", ":")))
            split_counts[pair.split] += 1
            split_sets[pair.split].add(product)
            fractions.append(float(pair.cloud_fraction))
        histogram = cover_histogram(fractions)
        split_products = {s: sorted(split_sets[s]) for s in SPLITS}
        (tmp / MANIFEST_NAME).write_text(
            "".join(line + "\n" for line in manifest_lines), encoding="utf-8"
        )
        card = _card(
            count,
            split_counts,
            split_products,
            histogram,
            tile_shape,
            model_sha256,
            seed,
            blend,
            extra_card,
        )
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        names += [MANIFEST_NAME, CARD_NAME]
        _write_zip(tmp, tmp / ZIP_NAME, names)
        digest = _sha256(tmp / ZIP_NAME)
    return TrainingSetSummary(
        dest=dest,
        count=count,
        split_counts=split_counts,
        split_products=split_products,
        histogram=histogram,
        zip_path=dest / ZIP_NAME,
        zip_sha256=digest,
        tile_shape=tile_shape,
    )


# --------------------------------------------------------------------------- reading


def read_manifest(dest: str | Path) -> list[dict[str, Any]]:
    """The manifest rows of the training set in ``dest``, in pair order."""
    path = Path(dest) / MANIFEST_NAME
    if not path.is_file():
        raise CloudGANError(f"{path}: no manifest; is {dest} a training set?")
    rows = []
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CloudGANError(f"{path}: line {k} is not valid JSON ({exc.msg})") from None
    return rows


def _read_png(path: Path, channels: int) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise CloudGANError(f"{path}: missing (listed in the manifest)")
    with Image.open(path) as im:
        arr = np.asarray(im)
    want = 3 if channels == 3 else 2
    if arr.ndim != want or (channels == 3 and arr.shape[2] != 3):
        raise CloudGANError(
            f"{path}: expected {'RGB' if channels == 3 else 'greyscale'}, got {arr.shape}"
        )
    return arr


def _stack(
    arrays: list[np.ndarray], empty_shape: tuple[int, ...], dest: Path, folder: str
) -> np.ndarray:
    if not arrays:
        return np.zeros(empty_shape, dtype=np.uint8)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise CloudGANError(f"{dest / folder}: tiles differ in size: {sorted(shapes)}")
    return np.stack(arrays)


def read_training_set(dest: str | Path) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Read a training set back: composites, masks and manifest rows, in manifest order.

    Returns
    -------
    tuple
        ``images`` uint8 (N, H, W, 3); ``masks`` uint8 (N, H, W) with 1 = cloud (the 0/255 PNG
        divided by 255); the manifest rows (dicts).

    Raises
    ------
    CloudGANError
        A file listed in the manifest is missing or a mask holds values other than 0 and 255.
    """
    dest = Path(dest)
    rows = read_manifest(dest)
    images, masks = [], []
    for row in rows:
        images.append(_read_png(dest / "images" / row["file"], 3))
        m = _read_png(dest / "masks" / row["file"], 1)
        if ((m != 0) & (m != 255)).any():
            raise CloudGANError(f"{dest / 'masks' / row['file']}: mask values must be 0 or 255")
        masks.append((m // 255).astype(np.uint8))
    return (
        _stack(images, (0, 0, 0, 3), dest, "images"),
        _stack(masks, (0, 0, 0), dest, "masks"),
        rows,
    )


def read_training_sources(dest: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The generated clouds and surfaces behind a training set's composites, in manifest order.

    Returns
    -------
    tuple
        ``clouds`` and ``surfaces``, each uint8 (N, H, W, 3).
    """
    dest = Path(dest)
    rows = read_manifest(dest)
    clouds = [_read_png(dest / "clouds" / r["file"], 3) for r in rows]
    surfaces = [_read_png(dest / "surface" / r["file"], 3) for r in rows]
    return (
        _stack(clouds, (0, 0, 0, 3), dest, "clouds"),
        _stack(surfaces, (0, 0, 0, 3), dest, "surface"),
    )


def pair_file_index(dest: str | Path) -> dict[str, list[int]]:
    """Pair numbers found in each folder of a training set (from the PNG file names), sorted.

    For :func:`cloudgan_core.validation.check_aligned`: the four folders and the manifest must
    list the same numbers. Keys: ``images``, ``masks``, ``clouds``, ``surface``, ``manifest``.
    """
    dest = Path(dest)
    out: dict[str, list[int]] = {}
    for folder in PAIR_FOLDERS:
        numbers = []
        for p in sorted((dest / folder).glob("*.png")):
            if not p.stem.isdigit():
                raise CloudGANError(f"{p}: file name is not a pair number")
            numbers.append(int(p.stem))
        out[folder] = sorted(numbers)
    out["manifest"] = sorted(int(r["index"]) for r in read_manifest(dest))
    return out
