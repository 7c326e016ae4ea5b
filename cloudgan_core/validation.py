"""Plain checks on composites and training sets, each returning a :class:`CheckOutcome`.

The Dagster asset checks call these and turn the outcome into an ``AssetCheckResult``
(``passed``, ``description``, ``metadata``). Metadata values are plain JSON types (int, float,
str, lists of those), never NumPy scalars. A check never raises on bad data: malformed input
(mismatched shapes, an empty set) is a failed outcome that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloudgan_core.cover import CoverRange

_MAX_LISTED = 20  # tile indices listed in metadata at most


@dataclass(frozen=True)
class CheckOutcome:
    """Result of one check.

    Attributes
    ----------
    passed
        True when the data meets the check.
    description
        One sentence a user reads in the UI: what was checked and what was found.
    metadata
        Figures behind the verdict (JSON types).
    """

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _shape(arr: Any) -> tuple[int, ...] | None:
    return tuple(int(x) for x in np.shape(arr)) if arr is not None else None


def _pairing_problem(composites: Any, surfaces: Any, masks: Any) -> str | None:
    c, s, m = np.shape(composites), np.shape(surfaces), np.shape(masks)
    if len(c) != 4 or c[-1] != 3:
        return f"composites must be (N, H, W, 3), got {c}"
    if c != s:
        return f"composites {c} and surfaces {s} differ in shape"
    if len(m) != 3 or m != c[:3]:
        return f"masks {m} do not match the composites' (N, H, W) {c[:3]}"
    return None


def check_aligned(
    images: Any,
    masks: Any,
    index: Sequence[int] | None = None,
    *,
    mask_index: Sequence[int] | None = None,
) -> CheckOutcome:
    """Images and masks pair up: same count, same H × W, same pair numbers.

    Parameters
    ----------
    images
        ``(N, H, W, 3)`` array, or a sequence of ``(H, W, 3)`` tiles.
    masks
        ``(N, H, W)`` array, or a sequence of ``(H, W)`` tiles.
    index
        Pair numbers of the images (e.g. the manifest's ``index`` column or the numbers of the
        files in ``images/``); must be N distinct numbers.
    mask_index
        Pair numbers of the masks (e.g. the numbers of the files in ``masks/``); must equal
        ``index`` element by element.
    """
    n_img, n_mask = len(images), len(masks)
    meta: dict[str, Any] = {"n_images": n_img, "n_masks": n_mask}
    if n_img != n_mask:
        return CheckOutcome(False, f"{n_img} images but {n_mask} masks", meta)
    bad_shape = []
    for k in range(n_img):
        ishape, mshape = np.shape(images[k]), np.shape(masks[k])
        if len(ishape) != 3 or ishape[-1] != 3 or len(mshape) != 2 or ishape[:2] != mshape:
            bad_shape.append(k)
    meta["shape_mismatches"] = len(bad_shape)
    if bad_shape:
        k = bad_shape[0]
        meta["mismatched_tiles"] = bad_shape[:_MAX_LISTED]
        return CheckOutcome(
            False,
            f"{len(bad_shape)} pair(s) differ in size, first at position {k}: image "
            f"{_shape(images[k])} vs mask {_shape(masks[k])}",
            meta,
        )
    if index is not None:
        idx = [int(x) for x in index]
        if len(idx) != n_img:
            meta["n_index"] = len(idx)
            return CheckOutcome(False, f"index lists {len(idx)} numbers for {n_img} pairs", meta)
        if len(set(idx)) != len(idx):
            dup = sorted({x for x in idx if idx.count(x) > 1})
            meta["duplicate_numbers"] = dup[:_MAX_LISTED]
            return CheckOutcome(False, f"index repeats pair numbers {dup[:5]}", meta)
        if mask_index is not None:
            midx = [int(x) for x in mask_index]
            if midx != idx:
                only_img = sorted(set(idx) - set(midx))
                only_mask = sorted(set(midx) - set(idx))
                meta["only_images"] = only_img[:_MAX_LISTED]
                meta["only_masks"] = only_mask[:_MAX_LISTED]
                reorder = "" if only_img or only_mask else ", or same numbers in another order"
                return CheckOutcome(
                    False,
                    f"image and mask numbers differ (images only: {only_img[:5]}, masks only: "
                    f"{only_mask[:5]}{reorder})",
                    meta,
                )
    shape = _shape(masks[0]) if n_img else None
    meta["tile_shape"] = list(shape) if shape else None
    return CheckOutcome(True, f"{n_img} images and masks pair up ({shape} px)", meta)


def check_outside_mask_unchanged(composites: Any, surfaces: Any, masks: Any, shadows: Any = None) -> CheckOutcome:
    """Every pixel outside cloud ∪ shadow of every composite is byte-identical to its surface.

    A pixel counts as differing when any of its three channels differs. ``shadows`` (``(N, H, W)``
    0/1, optional) are the cloud-shadow masks: shadow pixels are darkened on purpose. Metadata:
    ``differing_pixels`` (the count; must be 0), ``clear_pixels`` (outside cloud and shadow),
    ``tiles_affected``.
    """
    problem = _pairing_problem(composites, surfaces, masks)
    if problem is None and shadows is not None and np.shape(shadows) != np.shape(masks):
        problem = f"shadow masks {np.shape(shadows)} do not match the cloud masks {np.shape(masks)}"
    if problem:
        return CheckOutcome(False, problem, {"differing_pixels": -1})
    comp, surf = np.asarray(composites), np.asarray(surfaces)
    clear = np.asarray(masks) == 0
    if shadows is not None:
        clear &= np.asarray(shadows) == 0
    differs = np.any(comp != surf, axis=-1) & clear
    n_diff = int(np.count_nonzero(differs))
    per_tile = np.count_nonzero(differs.reshape(differs.shape[0], int(np.prod(differs.shape[1:]))), axis=1)
    tiles = np.flatnonzero(per_tile).tolist()
    meta = {
        "differing_pixels": n_diff,
        "clear_pixels": int(np.count_nonzero(clear)),
        "tiles_affected": len(tiles),
        "affected_tiles": tiles[:_MAX_LISTED],
    }
    if n_diff:
        return CheckOutcome(
            False,
            f"{n_diff} pixel(s) outside cloud and shadow differ from the surface in {len(tiles)} tile(s) "
            f"(first: tile {tiles[0]}); the masks are not exact",
            meta,
        )
    return CheckOutcome(True, f"all {meta['clear_pixels']} pixels outside cloud and shadow equal the surface", meta)


def check_inside_mask_changed(
    composites: Any, surfaces: Any, masks: Any, min_share: float = 0.95
) -> CheckOutcome:
    """At least ``min_share`` of the cloudy pixels differ from the surface (any channel).

    A set without cloudy pixels passes (nothing to change; share reported as 1.0).
    """
    problem = _pairing_problem(composites, surfaces, masks)
    if problem:
        return CheckOutcome(False, problem, {"changed_share": 0.0})
    comp, surf = np.asarray(composites), np.asarray(surfaces)
    cloudy = np.asarray(masks) != 0
    n_cloudy = int(np.count_nonzero(cloudy))
    changed = int(np.count_nonzero(np.any(comp != surf, axis=-1) & cloudy))
    share = changed / n_cloudy if n_cloudy else 1.0
    meta = {
        "changed_share": float(share),
        "changed_pixels": changed,
        "cloudy_pixels": n_cloudy,
        "min_share": float(min_share),
    }
    if share < min_share:
        return CheckOutcome(
            False,
            f"only {share:.1%} of {n_cloudy} cloudy pixels differ from the surface "
            f"(need {min_share:.1%}); clouds are too faint",
            meta,
        )
    return CheckOutcome(True, f"{share:.1%} of {n_cloudy} cloudy pixels changed", meta)


def check_cover_range(cover: Sequence[float] | np.ndarray, cover_range: CoverRange) -> CheckOutcome:
    """Every cover (percent) lies in ``cover_range`` (:meth:`CoverRange.contains`; NaN fails)."""
    c = np.asarray(cover, dtype=np.float64).ravel()
    bad = np.flatnonzero(~cover_range.contains(c))
    meta: dict[str, Any] = {
        "min_cover": cover_range.min,
        "max_cover": cover_range.max,
        "n": int(c.size),
        "n_outside": int(bad.size),
        "outside_tiles": bad[:_MAX_LISTED].tolist(),
    }
    finite = c[np.isfinite(c)]
    if finite.size:
        meta["min"] = float(finite.min())
        meta["max"] = float(finite.max())
    if bad.size:
        k = int(bad[0])
        return CheckOutcome(
            False,
            f"{bad.size} of {c.size} covers outside {cover_range.label} (first: tile {k} with {c[k]:g} %)",
            meta,
        )
    return CheckOutcome(True, f"all {c.size} covers within {cover_range.label}", meta)


def check_tiles_sane(images: Any) -> CheckOutcome:
    """The set is not empty, and no tile is all black or holds NaN."""
    n = len(images)
    if n == 0:
        return CheckOutcome(False, "the set is empty", {"n_tiles": 0})
    nan_tiles, black_tiles = [], []
    for k in range(n):
        tile = np.asarray(images[k])
        if np.issubdtype(tile.dtype, np.floating) and np.isnan(tile).any():
            nan_tiles.append(k)
        elif tile.size == 0 or not np.any(tile):
            black_tiles.append(k)
    meta = {
        "n_tiles": n,
        "nan_tiles": len(nan_tiles),
        "all_black_tiles": len(black_tiles),
        "bad_tiles": sorted(nan_tiles + black_tiles)[:_MAX_LISTED],
    }
    if nan_tiles or black_tiles:
        parts = []
        if nan_tiles:
            parts.append(f"{len(nan_tiles)} tile(s) with NaN (first {nan_tiles[0]})")
        if black_tiles:
            parts.append(f"{len(black_tiles)} all-black tile(s) (first {black_tiles[0]})")
        return CheckOutcome(False, "; ".join(parts), meta)
    return CheckOutcome(True, f"{n} tiles, none empty, all-black or NaN", meta)


def check_min_pairs(n: int, minimum: int) -> CheckOutcome:
    """The training set has at least ``minimum`` pairs."""
    meta = {"pairs": int(n), "minimum": int(minimum)}
    if n < minimum:
        return CheckOutcome(False, f"{n} pairs, fewer than the required {minimum}", meta)
    return CheckOutcome(True, f"{n} pairs (at least {minimum})", meta)


# --------------------------------------------------------------------------- composed checks


def check_composites_aligned(images: Any, masks: Any, clouds: Any, surfaces: Any,
                             tiles: Sequence[int]) -> CheckOutcome:
    """Composites, clouds and surfaces share one shape, and masks and index rows (their ``tile``
    numbers) pair up with them."""
    n = len(images)
    for name, arr in (("clouds", clouds), ("surfaces", surfaces)):
        if np.shape(arr) != np.shape(images):
            return CheckOutcome(False, f"{name} {np.shape(arr)} and images {np.shape(images)} differ in shape",
                                {"n_images": n})
    return check_aligned(images, masks, tiles)


def cover_percent(masks: np.ndarray) -> np.ndarray:
    """Cloud cover (percent, 0..100) of each ``(N, H, W)`` 0/1 mask; empty for no masks."""
    masks = np.asarray(masks)
    return 100.0 * masks.reshape(len(masks), -1).mean(axis=1) if len(masks) else np.zeros(0)


def check_composites_sane(images: Any, clouds: Any, surfaces: Any) -> CheckOutcome:
    """No composite, cloud or surface tile is all black or NaN; an empty partition passes."""
    if len(images) == 0:
        return CheckOutcome(True, "no composites in this partition (no cloud tiles): nothing to check",
                            {"n_tiles": 0})
    for name, arr in (("images", images), ("clouds", clouds), ("surfaces", surfaces)):
        outcome = check_tiles_sane(arr)
        if not outcome.passed:
            return CheckOutcome(False, f"{name}: {outcome.description}", outcome.metadata)
    return outcome


def check_training_set_aligned(numbers: Mapping[str, list[int]], images: Sequence[np.ndarray],
                               masks: Sequence[np.ndarray]) -> CheckOutcome:
    """images/ and masks/ pair up (same numbers and tile sizes), and every other folder and the
    manifest list the same numbers (``numbers``: pair numbers per folder and ``manifest``; the
    PNGs of images/ and masks/ as stored, in number order)."""
    outcome = check_aligned(images, masks, numbers["images"], mask_index=numbers["masks"])
    if not outcome.passed:
        return outcome
    for other in (k for k in numbers if k not in ("images", "masks")):
        if numbers[other] != numbers["images"]:
            missing = sorted(set(numbers["images"]) - set(numbers[other]))
            extra = sorted(set(numbers[other]) - set(numbers["images"]))
            return CheckOutcome(False, f"{other} numbers differ from images/ (missing {missing[:5]}, "
                                       f"extra {extra[:5]})",
                                {**outcome.metadata, "missing": missing[:20], "extra": extra[:20]})
    return outcome
