"""Lay clouds over cloud-free surface tiles so the cloud (and shadow) mask stays exact.

1. :func:`assign_surfaces` picks, for every cloud tile, one tile from the pool of cloud-free surface
   tiles (seeded, spread evenly, preferring another product than the cloud's).
2. :func:`render_composites` renders each cloud (optical thickness tau and top height) over its
   surface tile's nine bands with the surface tile's sun and view angles
   (:func:`cloudgan_core.clouds.render`: S1-S6 reflectance through a two-stream layer, S7-S9
   brightness temperature of a grey layer at the cloud-top temperature, the shadow projected along
   the sun azimuth) and takes the false colour of the rendered bands by the project's recipe
   (R = (S3+S5)/2, G = S3, B = (S3+S1)/2). Every pixel outside cloud and shadow is copied from
   the surface tile's own 8-bit false colour, byte for byte, so the masks are exact.
3. :func:`original_blend` reproduces the original CloudGAN's fixed 50 % blend followed by a
   per-image intensity stretch, for side-by-side comparison only (it changes clear pixels).

:func:`brightness` is the project's one per-pixel brightness (mean of R, G, B) and
:func:`composite_stats` the figures of a set of composites (opacity, brightness change, shadow).

Arrays follow one convention throughout: images ``uint8 (N, H, W, 3)`` in digital numbers
0..255, masks ``uint8 (N, H, W)`` with 1 = cloud and 0 = clear, bands ``float32 (N, 9, H, W)``
in :data:`cloudgan_core.clouds.BANDS` order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields

import numpy as np

from cloudgan_core.clouds import BANDS, CloudField, CloudModelError, Geometry, false_color, render
from cloudgan_core.errors import CloudGANError

#: ``render``: the clouds rendered in nine bands over the surface (mask-exact); ``original``: the
#: 2021 CloudGAN's 50 % blend of the 8-bit images (comparison only).
BLENDS: tuple[str, ...] = ("render", "original")
#: Index columns of a tile's sun and view angles (degrees), the fields of :class:`~cloudgan_core.clouds.Geometry`.
GEOMETRY_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclass_fields(Geometry))


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


def tile_geometry(row: Mapping[str, object], where: str) -> Geometry:
    """The sun and view angles of a tile from its index row (:data:`GEOMETRY_COLUMNS`, degrees).

    Raises
    ------
    CloudGANError
        A column is missing or empty (tiles from before the angles were recorded), or an angle is
        outside the cloud model's range (solar zenith 0-85 deg, view zenith 0-70 deg); the
        message names ``where`` (the file and row).
    """
    missing = [c for c in GEOMETRY_COLUMNS if row.get(c) in (None, "")]
    if missing:
        raise CloudGANError(f"{where}: no {', '.join(missing)} (tiles indexed before the sun and view angles were "
                            "recorded); materialize tiles and sorted_tiles again")
    try:
        return Geometry(**{c: float(row[c]) for c in GEOMETRY_COLUMNS})  # type: ignore[arg-type]
    except (CloudModelError, TypeError, ValueError) as exc:
        raise CloudGANError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class RenderedSet:
    """What :func:`render_composites` returns, tile by tile.

    Attributes
    ----------
    images
        ``uint8 (N, H, W, 3)`` false colour of ``bands``; outside cloud and shadow the surface's bytes.
    bands
        ``float32 (N, 9, H, W)`` the rendered bands (S1-S6 reflectance, S7-S9 K).
    cloud, shadow
        ``uint8 (N, H, W)``: 1 where tau > 0; 1 where the shadow darkens a clear pixel (disjoint).
    opacity
        ``float32 (N, H, W)``: the share of the surface's S3 signal the cloud hides, 0 where clear.
    """

    images: np.ndarray
    bands: np.ndarray
    cloud: np.ndarray
    shadow: np.ndarray
    opacity: np.ndarray


def render_composites(surface_bands: np.ndarray, surface_images: np.ndarray, tau: np.ndarray,
                      top_height_km: Sequence[float], geometries: Sequence[Geometry], *,
                      shadows: bool = True) -> RenderedSet:
    """Render each cloud over its surface tile in nine bands and take the false colour.

    Parameters
    ----------
    surface_bands
        ``(N, 9, H, W)`` clear surface tiles (finite; S7-S9 within 100-400 K).
    surface_images
        ``uint8 (N, H, W, 3)`` the same tiles' false colour, copied where the composite is clear.
    tau
        ``(N, H, W)`` cloud optical thickness at 0.55 um, 0 where clear.
    top_height_km
        Cloud-top height of each tile, km (0-20).
    geometries
        Sun and view angles each cloud is rendered with (the surface tile's).
    shadows
        Cast the clouds' shadows (:func:`cloudgan_core.clouds.render`).

    Returns
    -------
    RenderedSet

    Raises
    ------
    CloudGANError
        The inputs do not pair up, or a tile's inputs are outside the model (the message names
        the tile).
    """
    surface_images = _as_images(surface_images, "surface images")
    surf = np.asarray(surface_bands)
    n, h, w = surface_images.shape[:3]
    if surf.shape != (n, len(BANDS), h, w):
        raise CloudGANError(f"surface bands {surf.shape} do not pair up with the surface images "
                            f"{surface_images.shape} (expected {(n, len(BANDS), h, w)})")
    tau = np.asarray(tau)
    if tau.shape != (n, h, w) or len(top_height_km) != n or len(geometries) != n:
        raise CloudGANError(f"tau {tau.shape}, {len(top_height_km)} heights and {len(geometries)} geometries do "
                            f"not pair up with {n} surface tiles of {h} x {w} px")
    out = RenderedSet(images=surface_images.copy(), bands=np.empty((n, len(BANDS), h, w), np.float32),
                      cloud=np.zeros((n, h, w), np.uint8), shadow=np.zeros((n, h, w), np.uint8),
                      opacity=np.zeros((n, h, w), np.float32))
    for i in range(n):
        try:
            r = render(surf[i], CloudField(tau[i], float(top_height_km[i])), geometries[i], shadows=shadows)
        except CloudModelError as exc:
            raise CloudGANError(f"tile {i}: {exc}") from None
        out.bands[i] = r.bands
        touched = r.cloud | r.shadow
        out.images[i][touched] = false_color(r.bands)[touched]
        out.cloud[i], out.shadow[i], out.opacity[i] = r.cloud, r.shadow, r.opacity
    return out


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class CompositeStats:
    """Figures of a set of composites (brightness in digital numbers, see :func:`brightness`).

    Attributes
    ----------
    tile_opacity
        ``float64 (N,)`` mean opacity over each tile's cloud pixels (0 for a tile without cloud).
    tile_change_inside
        ``float64 (N,)`` mean brightness change (composite − surface) over each tile's cloud pixels.
    tile_shadow_fraction
        ``float64 (N,)`` share of each tile's pixels in the cloud shadow.
    mean_opacity, mean_change_inside
        The same over all cloud pixels of the set (0 without cloud pixels).
    mean_shadow_fraction
        Share of all pixels in shadow.
    mean_brightness
        Mean brightness of all composite pixels (0 for an empty set).
    """

    tile_opacity: np.ndarray
    tile_change_inside: np.ndarray
    tile_shadow_fraction: np.ndarray
    mean_opacity: float
    mean_change_inside: float
    mean_shadow_fraction: float
    mean_brightness: float


def composite_stats(images: np.ndarray, surfaces: np.ndarray, masks: np.ndarray, opacity: np.ndarray,
                    shadows: np.ndarray | None = None) -> CompositeStats:
    """Opacity, brightness and shadow figures of a set of composites.

    Parameters
    ----------
    images, surfaces
        ``uint8 (N, H, W, 3)``: the composites and the surface behind each.
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud.
    opacity
        ``(N, H, W)`` the cloud's opacity per pixel (:attr:`RenderedSet.opacity`; 0.5 inside the
        mask for the 50 % blend).
    shadows
        Optional ``(N, H, W)`` shadow masks, 1 = shadow.
    """
    mask = _as_masks(masks)
    images = _as_images(images, "composites")
    surfaces = _as_images(surfaces, "surfaces")
    _check_same_grid(images, mask, "composites", "masks")
    _check_same_grid(surfaces, mask, "surfaces", "masks")
    alpha = np.asarray(opacity, dtype=np.float32)
    if alpha.shape != mask.shape:
        raise CloudGANError(f"opacity {alpha.shape} and masks {mask.shape} differ in shape")
    shade = np.zeros(mask.shape, bool) if shadows is None else _as_masks(shadows, "shadows")
    n = mask.shape[0]
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
        tile_shadow_fraction=shade.reshape(n, pixels).mean(axis=1) if n else np.zeros(0),
        mean_opacity=float(alpha[mask].mean(dtype=np.float64)) if cloudy else 0.0,
        mean_change_inside=float(change[mask].mean(dtype=np.float64)) if cloudy else 0.0,
        mean_shadow_fraction=float(shade.mean()) if n else 0.0,
        mean_brightness=float(image_b.mean(dtype=np.float64)) if n else 0.0,
    )
