"""Lay generated clouds over cloud-free surface tiles so the cloud mask stays exact.

Three steps, each a plain function:

1. :func:`assign_surfaces` picks, for every generated cloud tile, one tile from the pool of
   cloud-free surface tiles (seeded, spread evenly, preferring another product than the cloud's).
2. :func:`cloud_opacity` and :func:`cloud_colour` turn a generated cloud tile and its mask into a
   per-pixel opacity α and the colour laid over the surface.
3. :func:`composite` blends: ``out = surface·(1 − α) + colour·α``. α is 0 wherever the mask is
   clear, and the result is forced byte-identical to the surface there, so the mask is exact.

:func:`brightness` is the project's one per-pixel brightness (mean of R, G, B) and
:func:`composite_stats` the figures of a set of composites (opacity, brightness change).

``composite(..., blend="original")`` reproduces the original CloudGAN's fixed 50 % blend followed
by a per-image intensity stretch, for side-by-side comparison only (it changes clear pixels).

Arrays follow one convention throughout: images ``uint8 (N, H, W, 3)`` in digital numbers
0..255, masks ``uint8 (N, H, W)`` with 1 = cloud and 0 = clear.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cloudgan_core.errors import CloudGANError
from cloudgan_core.settings import check_choice, check_fraction, check_order, check_positive

Blend = Literal["alpha", "original"]
BLENDS: tuple[str, ...] = ("alpha", "original")


# --------------------------------------------------------------------------- array helpers


def _as_images(images: np.ndarray, what: str) -> np.ndarray:
    """Return ``images`` as ``(N, H, W, 3)``; a single ``(H, W, 3)`` tile gets a batch axis."""
    arr = np.asarray(images)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise CloudGANError(f"{what}: expected RGB tiles of shape (N, H, W, 3), got {arr.shape}")
    return arr


def _as_masks(masks: np.ndarray, what: str = "masks") -> np.ndarray:
    """Return ``masks`` as boolean ``(N, H, W)`` (True = cloud); values must be 0 or 1."""
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise CloudGANError(f"{what}: expected masks of shape (N, H, W), got {arr.shape}")
    if arr.dtype != bool:
        if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
            raise CloudGANError(f"{what}: mask contains NaN")
        if ((arr != 0) & (arr != 1)).any():
            bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5].tolist()
            raise CloudGANError(
                f"{what}: mask values must be 0 (clear) or 1 (cloud), found {bad} "
                "(a 0/255 mask must be divided by 255 first)"
            )
        arr = arr.astype(bool)
    return arr


def _check_same_grid(a: np.ndarray, b: np.ndarray, what_a: str, what_b: str) -> None:
    if a.shape[:3] != b.shape[:3]:
        raise CloudGANError(
            f"{what_a} {a.shape[:3]} and {what_b} {b.shape[:3]} differ in tile count or size "
            "(N, H, W); they must pair up one to one"
        )


def brightness(images: np.ndarray) -> np.ndarray:
    """Per-pixel brightness: the plain mean of R, G and B, as ``float32``.

    The one brightness of the project: cloud opacity, the surface pool's and the composites'
    figures, the threshold detector of :mod:`cloudgan_core.quality` and the generator evaluation
    all use it. For ``uint8`` input it is exact: the three channels are added in ``uint16`` and
    divided by 3 once (adding the three channel planes is ~10x faster than a reduction over the
    last axis).

    Parameters
    ----------
    images
        ``(..., 3)`` tiles, e.g. ``(N, H, W, 3)`` or ``(H, W, 3)``, any numeric dtype (digital
        numbers 0..255 for ``uint8``).

    Returns
    -------
    numpy.ndarray
        ``float32`` of the input's shape without the channel axis, in the input's units
        (0..255 for ``uint8``).

    Raises
    ------
    CloudGANError
        The last axis does not hold three channels.
    """
    arr = np.asarray(images)
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise CloudGANError(f"images: expected 3 channels in the last axis, got shape {arr.shape}")
    if arr.dtype == np.uint8:  # exact: the channel sum fits uint16
        total = np.add(arr[..., 0], arr[..., 1], dtype=np.uint16)
        total += arr[..., 2]
        out = total.astype(np.float32)
    else:
        out = arr[..., 0].astype(np.float32)
        out += arr[..., 1]
        out += arr[..., 2]
    out /= np.float32(3.0)
    return out


def check_opacity(min_opacity: float, max_opacity: float, gamma: float) -> None:
    """The opacity settings: ``0 <= min_opacity <= max_opacity <= 1`` and ``gamma > 0``.

    Raises
    ------
    SettingError
        Naming the setting and its allowed range.
    """
    check_fraction("min_opacity", min_opacity)
    check_fraction("max_opacity", max_opacity)
    check_order("min_opacity", min_opacity, "max_opacity", max_opacity)
    check_positive("gamma", gamma)


# --------------------------------------------------------------------------- surface assignment


def assign_surfaces(
    cloud_products: Sequence[str],
    surface_products: Sequence[str],
    *,
    seed: int,
    prefer_other_product: bool = True,
) -> np.ndarray:
    """Choose one surface tile for every generated cloud tile.

    The pool is dealt like a shuffled deck: a seeded permutation of all surface tiles is drawn
    from in order, and a fresh permutation is dealt only when every surface has been used, so no
    surface is used twice while unused ones remain (uses differ by at most one across the pool).
    With ``prefer_other_product`` the first unused surface (in deck order) whose product differs
    from the cloud's product is taken; if every unused surface comes from the cloud's own product,
    the first unused one is taken anyway.

    Parameters
    ----------
    cloud_products
        Product id of each generated cloud tile, in tile order (length N).
    surface_products
        Product id (or source name, e.g. ``"user"``) of each surface tile in the pool (length S).
    seed
        Seed of the permutations; same inputs and seed give the same assignment.
    prefer_other_product
        Prefer a surface from another product than the cloud's.

    Returns
    -------
    numpy.ndarray
        ``int64 (N,)`` indices into the surface pool.

    Raises
    ------
    CloudGANError
        If the surface pool is empty while there are clouds to place.
    """
    n = len(cloud_products)
    s = len(surface_products)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if s == 0:
        raise CloudGANError(
            f"surface pool is empty: no cloud-free surface tile to place {n} cloud tile(s) on "
            "(materialize partitions with 0 % cover tiles or add a user surface folder)"
        )
    rng = np.random.default_rng(seed)
    products = [str(p) for p in surface_products]
    out = np.empty(n, dtype=np.int64)

    # Unused surfaces of the current deck, kept per product in deck order; the deck position
    # (rank) tells which product's front surface comes first overall.
    rank = np.empty(s, dtype=np.int64)
    fronts: dict[str, deque[int]] = {}

    def deal() -> None:
        fronts.clear()
        order = rng.permutation(s)
        rank[order] = np.arange(s)
        for idx in order.tolist():
            fronts.setdefault(products[idx], deque()).append(idx)

    deal()
    for i, cloud_product in enumerate(cloud_products):
        if not fronts:
            deal()
        candidates = fronts.keys()
        if prefer_other_product:
            others = [p for p in candidates if p != str(cloud_product)]
            if others:
                candidates = others
        best = min(candidates, key=lambda p: rank[fronts[p][0]])
        pick = fronts[best].popleft()
        if not fronts[best]:
            del fronts[best]
        out[i] = pick
    return out


# --------------------------------------------------------------------------- opacity and colour


def cloud_opacity(
    clouds: np.ndarray,
    masks: np.ndarray,
    *,
    min_opacity: float = 0.35,
    max_opacity: float = 1.0,
    gamma: float = 1.0,
) -> np.ndarray:
    """Per-pixel cloud opacity α from a generated cloud tile and its mask.

    ``α = 0`` where the mask is clear. Inside the mask::

        b = mean(R, G, B) / 255                       (cloud brightness, 0..1)
        α = min_opacity + (max_opacity − min_opacity) · b ** gamma

    so a dim (thin) generated cloud pixel gets ``min_opacity`` and a white (thick) one
    ``max_opacity``. ``min_opacity > 0`` changes every masked pixel by at least that share of
    the gap between surface and cloud colour (so visibly, unless the surface there is already as
    bright as the cloud colour, e.g. snow); ``gamma > 1`` makes mid-bright cloud thinner,
    ``gamma < 1`` thicker.

    Parameters
    ----------
    clouds
        ``uint8 (N, H, W, 3)`` generated clouds (bright where cloud, dark elsewhere).
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud, 0 = clear.
    min_opacity, max_opacity
        Opacity of the darkest and brightest masked pixel, ``0 <= min <= max <= 1``.
    gamma
        Exponent applied to the brightness, ``> 0``.

    Returns
    -------
    numpy.ndarray
        ``float32 (N, H, W)`` opacity in 0..1.
    """
    check_opacity(min_opacity, max_opacity, gamma)
    clouds = _as_images(clouds, "clouds")
    mask = _as_masks(masks)
    _check_same_grid(clouds, mask, "clouds", "masks")
    b = np.clip(brightness(clouds) / np.float32(255.0), 0.0, 1.0)
    if gamma != 1.0:
        b = b ** np.float32(gamma)
    alpha = np.float32(min_opacity) + np.float32(max_opacity - min_opacity) * b
    return np.where(mask, alpha, np.float32(0.0)).astype(np.float32)


def cloud_colour(clouds: np.ndarray, masks: np.ndarray, *, whiten: float = 0.5) -> np.ndarray:
    """The colour laid over the surface: the generated cloud's own RGB, pulled towards white.

    Inside the mask ``colour = 255 − (255 − cloud) · (1 − whiten)`` per channel, i.e. a linear
    mix ``whiten · white + (1 − whiten) · cloud``. With the default ``whiten = 0.5`` a black
    generated pixel becomes mid-grey (127.5) and a white one stays white, so a dim generated cloud
    still reads as cloud while keeping its texture and tint. Outside the mask the colour is 0
    (it is never used there: α = 0).

    Parameters
    ----------
    clouds
        ``uint8 (N, H, W, 3)`` generated clouds.
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud.
    whiten
        Share of white mixed in, 0 (cloud's own colour) .. 1 (pure white).

    Returns
    -------
    numpy.ndarray
        ``float32 (N, H, W, 3)`` colour in digital numbers 0..255.
    """
    check_fraction("whiten", whiten)
    clouds = _as_images(clouds, "clouds")
    mask = _as_masks(masks)
    _check_same_grid(clouds, mask, "clouds", "masks")
    c = clouds.astype(np.float32)
    colour = np.float32(255.0) - (np.float32(255.0) - c) * np.float32(1.0 - whiten)
    return np.where(mask[..., None], colour, np.float32(0.0)).astype(np.float32)


# --------------------------------------------------------------------------- compositing


def original_blend(surface: np.ndarray, clouds: np.ndarray) -> np.ndarray:
    """The original CloudGAN composite: fixed 50 % PIL blend, then a per-image stretch.

    Each pair goes through ``PIL.Image.blend(surface, cloud, 0.5)`` and then
    ``skimage.exposure.rescale_intensity`` with its defaults (the image's own min..max stretched
    to 0..255). The mask is not used, so clear pixels change too. Comparison only.

    Returns
    -------
    numpy.ndarray
        ``uint8 (N, H, W, 3)``.
    """
    from PIL import Image
    from skimage.exposure import rescale_intensity

    surface = _as_images(surface, "surface")
    clouds = _as_images(clouds, "clouds")
    if surface.shape != clouds.shape:
        raise CloudGANError(f"surface {surface.shape} and clouds {clouds.shape} differ in shape")
    out = np.empty(surface.shape, dtype=np.uint8)
    for i in range(surface.shape[0]):
        s_img = Image.fromarray(np.ascontiguousarray(surface[i], dtype=np.uint8))
        c_img = Image.fromarray(np.ascontiguousarray(clouds[i], dtype=np.uint8))
        blended = np.asarray(Image.blend(s_img, c_img, 0.5))
        out[i] = rescale_intensity(blended)
    return out


def composite(
    surface: np.ndarray,
    clouds: np.ndarray,
    masks: np.ndarray,
    *,
    blend: Blend = "alpha",
    min_opacity: float = 0.35,
    max_opacity: float = 1.0,
    gamma: float = 1.0,
    whiten: float = 0.5,
) -> np.ndarray:
    """Composite generated clouds onto surface tiles.

    ``blend="alpha"`` (default): ``out = round(surface·(1 − α) + colour·α)`` with α from
    :func:`cloud_opacity` and colour from :func:`cloud_colour`. Pixels where the mask is clear are
    copied from the surface (byte-identical), so the mask describes the image exactly.

    ``blend="original"``: :func:`original_blend` (50 % blend + stretch), for comparison only.

    Parameters
    ----------
    surface
        ``uint8 (N, H, W, 3)`` surface tile behind each cloud (already assigned, one per cloud).
    clouds
        ``uint8 (N, H, W, 3)`` generated clouds.
    masks
        ``(N, H, W)`` masks, 1 = cloud, 0 = clear.
    blend, min_opacity, max_opacity, gamma, whiten
        See :func:`cloud_opacity` and :func:`cloud_colour`.

    Returns
    -------
    numpy.ndarray
        ``uint8 (N, H, W, 3)`` composites.
    """
    check_choice("blend", blend, BLENDS)
    surface = _as_images(surface, "surface")
    clouds = _as_images(clouds, "clouds")
    mask = _as_masks(masks)
    if surface.shape != clouds.shape:
        raise CloudGANError(f"surface {surface.shape} and clouds {clouds.shape} differ in shape")
    _check_same_grid(surface, mask, "surface", "masks")
    if surface.dtype != np.uint8 or clouds.dtype != np.uint8:
        raise CloudGANError(
            "surface and clouds must be uint8 digital numbers, "
            f"got {surface.dtype} and {clouds.dtype}"
        )
    if blend == "original":
        return original_blend(surface, clouds)
    alpha = cloud_opacity(
        clouds, mask, min_opacity=min_opacity, max_opacity=max_opacity, gamma=gamma
    )[..., None]
    colour = cloud_colour(clouds, mask, whiten=whiten)
    mixed = surface.astype(np.float32) * (np.float32(1.0) - alpha) + colour * alpha
    mixed = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return np.where(mask[..., None], mixed, surface)


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class CompositeStats:
    """Figures of a set of composites (brightness in digital numbers, see :func:`brightness`).

    Attributes
    ----------
    tile_opacity
        ``float64 (N,)`` mean opacity α over each tile's cloud pixels (0 for a tile without cloud).
    tile_change_inside
        ``float64 (N,)`` mean brightness change (composite − surface) over each tile's cloud pixels.
    mean_opacity, mean_change_inside
        The same over all cloud pixels of the set (0 without cloud pixels).
    mean_brightness
        Mean brightness of all composite pixels (0 for an empty set).
    """

    tile_opacity: np.ndarray
    tile_change_inside: np.ndarray
    mean_opacity: float
    mean_change_inside: float
    mean_brightness: float


def composite_stats(
    images: np.ndarray,
    surfaces: np.ndarray,
    clouds: np.ndarray,
    masks: np.ndarray,
    *,
    blend: Blend = "alpha",
    min_opacity: float = 0.35,
    max_opacity: float = 1.0,
    gamma: float = 1.0,
) -> CompositeStats:
    """Opacity and brightness figures of composites made by :func:`composite` with these settings.

    The opacity is :func:`cloud_opacity` for ``blend="alpha"`` and the fixed 0.5 of the 50 % blend
    for ``blend="original"``.

    Parameters
    ----------
    images, surfaces, clouds
        ``uint8 (N, H, W, 3)``: the composites, the surface and the generated cloud behind each.
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud.
    blend, min_opacity, max_opacity, gamma
        The settings the composites were made with.
    """
    mask = _as_masks(masks)
    images = _as_images(images, "composites")
    surfaces = _as_images(surfaces, "surfaces")
    _check_same_grid(images, mask, "composites", "masks")
    _check_same_grid(surfaces, mask, "surfaces", "masks")
    n = mask.shape[0]
    if blend == "alpha" and n:
        alpha = cloud_opacity(clouds, mask, min_opacity=min_opacity, max_opacity=max_opacity, gamma=gamma)
    else:
        alpha = np.where(mask, np.float32(0.5), np.float32(0.0))
    image_b = brightness(images)
    change = image_b - brightness(surfaces)
    pixels = mask.shape[1] * mask.shape[2]
    counts = mask.reshape(n, pixels).sum(axis=1)
    per_tile = np.maximum(counts, 1)

    def tile_means(values: np.ndarray) -> np.ndarray:
        sums = np.where(mask, values, np.float32(0.0)).reshape(n, pixels).sum(axis=1, dtype=np.float64)
        return np.where(counts > 0, sums / per_tile, 0.0)

    cloudy = int(counts.sum())
    return CompositeStats(
        tile_opacity=tile_means(alpha),
        tile_change_inside=tile_means(change),
        mean_opacity=float(alpha[mask].mean(dtype=np.float64)) if cloudy else 0.0,
        mean_change_inside=float(change[mask].mean(dtype=np.float64)) if cloudy else 0.0,
        mean_brightness=float(image_b.mean(dtype=np.float64)) if n else 0.0,
    )
