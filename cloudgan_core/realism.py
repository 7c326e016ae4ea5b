"""Realism figures of synthetic-cloud composites: texture, artefacts, edges, spectral signature.

Each figure compares what a cloud generator (procedural, GAN) or the original CloudGAN 50 % blend
lays over a clear surface with what real clouds look like:

* :func:`texture` — log-log slope of the window-averaged power spectrum of cloud reflectance
  inside the clouds, and its coefficient of variation;
* :func:`artifacts` — isolated spectral spikes at the Nyquist and half-Nyquist frequencies (the
  checkerboard of transposed convolutions), inside the clouds and along their edges;
* :func:`edge_opacity` — opacity at the cloud edge relative to the cloud core (hard cut-out or
  soft edge);
* :func:`spectral` — cloud brighter *and* colder than its surface; S5/S3 of clouds against snow;

:func:`realism_figures` computes all of them (plus the detector IoU and brightness figures of
:mod:`cloudgan_core.quality`) in one pass and returns a :class:`RealismFigures`.

Inputs, per set of N pairs
--------------------------
* **Bands**: composites and surfaces ``float (N, 9, H, W)`` in the band order :data:`BANDS`
  (S1–S6 top-of-atmosphere reflectance, S7–S9 brightness temperature in K). NaN marks an unusable
  pixel; it is left out of every figure.
* **False colour**: composites and surfaces ``uint8 (N, H, W, 3)`` of the original CloudGAN false
  colour (G = S3 reflectance × 255). Only the figures that need S3 alone (texture, artefacts,
  edges) and the detector/brightness figures exist there; the spectral ones read NaN.
* Cloud masks ``(N, H, W)`` bool or 0/1, optional shadow masks (same shape) and optional snow
  masks of the surface pixels (same shape).

Every figure comes with the number of windows, pixels or tiles behind it; a figure with nothing
to measure is NaN with a count of 0, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from cloudgan_core.composite import _as_masks, brightness
from cloudgan_core.errors import CloudGANError
from cloudgan_core.quality import blend_figures, change_figures

#: Band order of the ``(N, 9, H, W)`` band arrays (S1–S6 reflectance, S7–S9 brightness temperature).
BANDS: tuple[str, ...] = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9")
#: Visible band of the texture, artefact, edge and brightness-contrast figures (0.659 µm).
VIS_BAND = "S3"
#: Short-wave infrared band of the S5/S3 ratio (1.61 µm; snow absorbs, water clouds reflect).
SWIR_BAND = "S5"
#: Thermal band of the "colder than the surface" test (10.85 µm).
TIR_BAND = "S8"
#: Channel of the false-colour image that holds S3 × 255 (R = (S3+S5)/2, G = S3, B = (S3+S1)/2).
FALSE_COLOUR_VIS_CHANNEL = 1

#: Side of the square analysis windows (px); the fit below stays at wavelengths 32..2 px for any multiple of 32.
WINDOW = 64
#: Step between windows (px).
STRIDE = 32
#: The cloud core is the mask eroded by this many pixels (Chebyshev distance, 3×3 steps).
CORE_EROSION = 4
#: Frequencies of the spectral-slope fit, in cycles per window (1/32 .. 1/2 cycles/px at 64 px).
SLOPE_K = (WINDOW // 32, WINDOW // 2)
#: Nyquist points (f_x, f_y) in cycles/px: the period-2 stripes and checkerboard.
NYQUIST_POINTS: tuple[tuple[float, float], ...] = ((0.5, 0.0), (0.0, 0.5), (0.5, 0.5))
#: Half-Nyquist points (f_x, f_y) in cycles/px: period-4 patterns (two stacked 2× upsamplers).
HALF_NYQUIST_POINTS: tuple[tuple[float, float], ...] = (
    (0.25, 0.0), (0.0, 0.25), (0.25, 0.25), (0.25, -0.25), (0.25, 0.5), (0.5, 0.25),
)
#: A surface pixel this bright (255 in 8 bit) leaves no headroom for opacity; it is left out.
SATURATED = 254.5 / 255.0

_CHUNK = 512  # windows per FFT batch (512 × 64² float32 = 8 MiB)
# Half of the ring of frequency bins at Chebyshev distance 2 (the other half is the negation).
_RING2_HALF = ((0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (2, -1), (2, -2), (1, -2))


def band_index(name: str) -> int:
    """Position of band ``name`` (``"S1"`` .. ``"S9"``) on axis 1 of a band array."""
    try:
        return BANDS.index(name)
    except ValueError:
        raise CloudGANError(f"unknown band {name!r}; the band arrays hold {', '.join(BANDS)}") from None


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Pairs:
    """Validated inputs: kind, the raw arrays and the cloud mask."""

    kind: str  # "bands" or "false_colour"
    composites: np.ndarray
    surfaces: np.ndarray
    masks: np.ndarray  # bool (N, H, W)

    def plane(self, which: str, band: str) -> np.ndarray:
        """Band ``band`` of the composites or surfaces as float32 (N, H, W), reflectance or K."""
        arr = self.composites if which == "composites" else self.surfaces
        if self.kind == "false_colour":
            if band != VIS_BAND:
                raise CloudGANError(f"false-colour images hold only {VIS_BAND}, not {band}")
            return arr[..., FALSE_COLOUR_VIS_CHANNEL].astype(np.float32) / np.float32(255.0)
        return np.asarray(arr[:, band_index(band)], dtype=np.float32)


def _kind(images: np.ndarray, what: str) -> str:
    if images.ndim == 4 and images.dtype == np.uint8 and images.shape[-1] == 3:
        return "false_colour"
    if images.ndim == 4 and np.issubdtype(images.dtype, np.floating) and images.shape[1] == len(BANDS):
        return "bands"
    raise CloudGANError(
        f"{what}: expected float bands (N, {len(BANDS)}, H, W) or uint8 false colour (N, H, W, 3), "
        f"got {images.dtype} {images.shape}"
    )


def _grid(images: np.ndarray, kind: str) -> tuple[int, int, int]:
    n, h, w = (images.shape[:3] if kind == "false_colour" else (images.shape[0], *images.shape[2:]))
    return int(n), int(h), int(w)


def _pairs(composites: np.ndarray, surfaces: np.ndarray, masks: np.ndarray) -> _Pairs:
    comp, surf = np.asarray(composites), np.asarray(surfaces)
    kind = _kind(comp, "composites")
    if _kind(surf, "surfaces") != kind or comp.shape != surf.shape:
        raise CloudGANError(
            f"composites {comp.dtype} {comp.shape} and surfaces {surf.dtype} {surf.shape} do not pair up"
        )
    mask = _as_masks(masks)
    if mask.shape != _grid(comp, kind):
        raise CloudGANError(f"masks {mask.shape} do not match the composites' grid {_grid(comp, kind)}")
    return _Pairs(kind, comp, surf, mask)


def _extra_mask(masks: np.ndarray | None, grid: tuple[int, ...], what: str) -> np.ndarray | None:
    if masks is None:
        return None
    mask = _as_masks(masks, what)
    if mask.shape != grid:
        raise CloudGANError(f"{what} {mask.shape} do not match the composites' grid {grid}")
    return mask


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    """Erode each tile of ``mask`` (N, H, W) by ``px`` 3×3 steps; the tile border is not an edge."""
    return ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool), iterations=px, border_value=1)


# --------------------------------------------------------------------------- spectra


@dataclass(frozen=True)
class _Spectrum:
    power: np.ndarray  # (WINDOW, WINDOW) float64, mean |FFT|² over the windows, fft2 order
    windows: int
    tiles: np.ndarray  # bool (N,): tiles with at least one window


def _windows(a: np.ndarray) -> np.ndarray:
    """All WINDOW² windows of (N, H, W) at STRIDE: a view (N, ny, nx, WINDOW, WINDOW)."""
    return sliding_window_view(a, (WINDOW, WINDOW), axis=(1, 2))[:, ::STRIDE, ::STRIDE]


def _window_grid(ok: np.ndarray, every: bool) -> np.ndarray:
    """Window positions (N, ny, nx) whose pixels are all (``every``) or partly (else) ``ok``."""
    n, h, w = ok.shape
    if h < WINDOW or w < WINDOW:
        return np.zeros((n, 0, 0), bool)
    view = _windows(ok)
    return view.all(axis=(-2, -1)) if every else view.any(axis=(-2, -1))


def _hann2d() -> np.ndarray:
    """Periodic 2-D Hann window (a tone on a frequency bin leaks only into its 8 neighbours)."""
    h = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32)
    return np.outer(h, h)


def _spectrum(field: np.ndarray, where: np.ndarray) -> _Spectrum:
    """Mean power spectrum of the windows of ``field`` (N, H, W) at the positions ``where``."""
    index = np.argwhere(where)
    power = np.zeros((WINDOW, WINDOW // 2 + 1), np.float64)
    if len(index) == 0:
        return _Spectrum(np.full((WINDOW, WINDOW), np.nan), 0, np.zeros(field.shape[0], bool))
    view, hann = _windows(field), _hann2d()
    for start in range(0, len(index), _CHUNK):
        n, i, j = index[start:start + _CHUNK].T
        w = np.asarray(view[n, i, j], dtype=np.float32)  # fancy indexing copies: (m, WINDOW, WINDOW)
        w -= w.mean(axis=(1, 2), dtype=np.float64, keepdims=True).astype(np.float32)  # exact for a flat window
        w *= hann
        f = scipy.fft.rfft2(w)
        power += (f.real**2 + f.imag**2).sum(axis=0, dtype=np.float64)
    power /= len(index)
    # Rebuild the full plane from the real-input half: P(ky, kx) = P(-ky, -kx).
    full = np.empty((WINDOW, WINDOW), np.float64)
    full[:, : WINDOW // 2 + 1] = power
    kx = np.arange(WINDOW // 2 + 1, WINDOW)
    full[:, kx] = power[(-np.arange(WINDOW)) % WINDOW][:, WINDOW - kx]
    return _Spectrum(full, len(index), where.any(axis=(1, 2)))


def _radial_k() -> np.ndarray:
    """Integer radial frequency |k| (cycles per window, rounded) of each bin, fft2 order."""
    k = np.fft.fftfreq(WINDOW, 1.0 / WINDOW)
    return np.rint(np.hypot(k[:, None], k[None, :])).astype(np.int64)


def spectral_slope(power: np.ndarray) -> float:
    """Log-log slope of the radially averaged power spectrum over 1/32 .. 1/2 cycles/px.

    Parameters
    ----------
    power
        ``(WINDOW, WINDOW)`` power spectrum in :func:`numpy.fft.fft2` order.

    Returns
    -------
    float
        Slope of the least-squares line through (log k, log P̄(k)) for the integer radial
        frequencies k = :data:`SLOPE_K` (2 .. 32 cycles per 64-px window: wavelengths 32 .. 2 px),
        where P̄(k) is the mean power of the bins whose |k| rounds to k. NaN when a P̄(k) is zero
        or not finite.
    """
    r = _radial_k().ravel()
    p = np.asarray(power, np.float64).ravel()
    counts = np.bincount(r)
    profile = np.bincount(r, weights=p) / np.maximum(counts, 1)
    k = np.arange(SLOPE_K[0], SLOPE_K[1] + 1)
    prof = profile[k]
    if not np.all(np.isfinite(prof)) or np.any(prof <= 0):
        return math.nan
    return float(np.polyfit(np.log(k / WINDOW), np.log(prof), 1)[0])


def spike_ratio(power: np.ndarray, points: tuple[tuple[float, float], ...]) -> float:
    """Largest isolated-spike ratio of ``power`` at the given frequency points.

    For each point (f_x, f_y) in cycles/px: its power divided by the largest mean power of two
    opposite bins on the ring of 16 bins at Chebyshev distance 2 around it (periodic wrap).

    The ring at distance 2 lies outside the Hann window's main lobe, which spreads a pure tone
    over the point and its 8 nearest neighbours, so a tone is not diluted by its own leakage.
    Taking the *largest* opposite pair means a straight line of power through the point — the
    spectrum of a straight cloud edge, or of a pixel staircase — reads ≈ 1, and only a spike that
    stands out in every direction reads high.

    Parameters
    ----------
    power
        ``(WINDOW, WINDOW)`` power spectrum in :func:`numpy.fft.fft2` order.
    points
        Frequencies (f_x, f_y) in cycles/px, each a multiple of 1/WINDOW.

    Returns
    -------
    float
        The maximum ratio over the points; NaN if the spectrum is NaN or all zero there, inf for
        power at a point with none around it.
    """
    p = np.asarray(power, np.float64)
    best = math.nan
    for fx, fy in points:
        ky, kx = round(fy * WINDOW) % WINDOW, round(fx * WINDOW) % WINDOW
        pairs = [0.5 * (p[(ky + dy) % WINDOW, (kx + dx) % WINDOW] + p[(ky - dy) % WINDOW, (kx - dx) % WINDOW])
                 for dy, dx in _RING2_HALF]
        around, centre = max(pairs), p[ky, kx]
        if not (np.isfinite(around) and np.isfinite(centre)):
            continue
        if around > 0:
            ratio = centre / around
        elif centre > 0:
            ratio = math.inf
        else:
            continue
        best = ratio if math.isnan(best) else max(best, ratio)
    return float(best)


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Texture:
    """Texture of cloud reflectance (see :func:`texture`)."""

    slope: float
    cv: float
    windows: int
    tiles: int


@dataclass(frozen=True)
class Artifacts:
    """Spectral spikes at (half-)Nyquist inside the clouds and along their edges (see :func:`artifacts`)."""

    nyquist: float
    half_nyquist: float
    windows: int
    edge_nyquist: float
    edge_half_nyquist: float
    edge_windows: int


@dataclass(frozen=True)
class EdgeOpacity:
    """Opacity of the cloud edge relative to the cloud core (see :func:`edge_opacity`)."""

    ratio: float
    ring: float
    core: float
    ring_pixels: int
    core_pixels: int
    tiles: int


@dataclass(frozen=True)
class Spectral:
    """Spectral signature of the clouds (see :func:`spectral`)."""

    bright_cold_fraction: float
    cloud_pixels: int
    s5_s3_cloud: float
    s5_s3_cloud_pixels: int
    s5_s3_snow: float
    s5_s3_snow_pixels: int
    s5_s3_cloud_minus_snow: float
    s5_s3_cloud_over_snow: float


def _vis(pairs: _Pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S3 of composites and surfaces, and the cloud pixels where both are finite."""
    comp, surf = pairs.plane("composites", VIS_BAND), pairs.plane("surfaces", VIS_BAND)
    cloud = pairs.masks & np.isfinite(comp) & np.isfinite(surf)
    return comp, surf, cloud


def _texture(comp: np.ndarray, core: np.ndarray, spectrum: _Spectrum) -> Texture:
    used = spectrum.tiles
    if spectrum.windows == 0:
        return Texture(math.nan, math.nan, 0, 0)
    cvs = []
    for i in np.flatnonzero(used):
        values = comp[i][core[i]].astype(np.float64)
        mean = values.mean()
        cvs.append(values.std() / mean if mean > 0 else math.nan)
    cv = float(np.mean(cvs)) if np.all(np.isfinite(cvs)) else math.nan
    return Texture(spectral_slope(spectrum.power), cv, spectrum.windows, int(used.sum()))


def _core_spectrum(comp: np.ndarray, core: np.ndarray) -> _Spectrum:
    return _spectrum(comp, _window_grid(core, every=True))


def _edge_spectrum(comp: np.ndarray, surf: np.ndarray, ring: np.ndarray) -> _Spectrum:
    delta = comp - surf
    finite = np.isfinite(delta)
    where = _window_grid(ring, every=False) & _window_grid(finite, every=True)
    return _spectrum(np.where(finite, delta, np.float32(0)), where)


def _ring(cloud: np.ndarray, eroded1: np.ndarray) -> np.ndarray:
    return cloud & ~eroded1


def texture(composites: np.ndarray, surfaces: np.ndarray, masks: np.ndarray) -> Texture:
    """Spectral slope and coefficient of variation of cloud reflectance inside the clouds.

    Definition: the cloud core is the cloud mask (pixels with finite S3 in composite and surface)
    eroded by 4 px (a pixel is core when every pixel within Chebyshev distance 4 is cloud; the tile
    border does not erode). Every 64 × 64 window (stride 32) lying entirely in the core is taken
    from the composite's S3 reflectance (false colour: G / 255); its mean is subtracted, a
    periodic 2-D Hann window applied, and |FFT|² averaged over all windows of all tiles. The power
    is averaged radially in integer-|k| bins and a least-squares line fitted to log P̄ against
    log k for k = 2 .. 32 cycles per window, i.e. 1/32 .. 1/2 cycles/px (wavelengths 32 .. 2 px)
    (:func:`spectral_slope`). The slope is negative: ≈ −β for a field with P(k) ∝ k^−β (the 2-D
    radial average; the 1-D spectrum of a transect has slope −(β − 1)).

    The coefficient of variation is std / mean of S3 over all core pixels of a tile (not only
    those in windows), averaged over the tiles that hold at least one window (NaN if such a tile
    has a mean ≤ 0).

    What flat or odd clouds read: an exactly constant plate has no power (slope NaN, CV 0); a plate
    with white sensor or 8-bit quantisation noise reads a slope ≈ 0 and a CV of its noise; a smooth
    ramp or blur reads steeper than real clouds.

    Parameters
    ----------
    composites, surfaces
        ``float (N, 9, H, W)`` bands or ``uint8 (N, H, W, 3)`` false colour.
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud.

    Returns
    -------
    Texture
        ``slope``, ``cv``, ``windows`` (number of windows), ``tiles`` (tiles with a window);
        NaN and 0 when no window fits.
    """
    pairs = _pairs(composites, surfaces, masks)
    comp, _, cloud = _vis(pairs)
    core = _erode(cloud, CORE_EROSION)
    return _texture(comp, core, _core_spectrum(comp, core))


def artifacts(composites: np.ndarray, surfaces: np.ndarray, masks: np.ndarray) -> Artifacts:
    """Isolated spectral spikes at the Nyquist and half-Nyquist frequencies.

    Definition: in the window-averaged power spectrum of :func:`texture` (64 × 64 windows inside
    the cloud core, S3 composite reflectance, mean removed, periodic Hann), for each point
    (f_x, f_y) of the Nyquist group {(½, 0), (0, ½), (½, ½)} and of the half-Nyquist group
    {(¼, 0), (0, ¼), (¼, ¼), (¼, −¼), (¼, ½), (½, ¼)} cycles/px: the power at the point divided by
    the largest mean of two opposite bins on the ring at Chebyshev distance 2 around it (periodic
    wrap); the figure of a group is the maximum over its points (:func:`spike_ratio`).

    The same figures on the *edge windows* — every 64 × 64 window (stride 32) that holds at least
    one cloud-edge pixel (the 1-px ring inside the mask boundary, see :func:`edge_opacity`) and no
    NaN — use the cloud's contribution ``S3(composite) − S3(surface)`` instead of the composite, so
    the surface's own texture does not count. This catches the dotted patterns a generator leaves
    along cloud edges, which windows wholly inside the core never see.

    A field without a periodic pattern reads ≈ 1 (white noise: median 1.0), a smooth power-law
    field a little less (its power falls towards Nyquist); a period-2 checkerboard or stripe
    pattern of a few per cent reads ≫ 2 in the Nyquist group, a period-4 pattern in the
    half-Nyquist group. Straight or staircase cloud edges put a *line* of power through these
    points, which the opposite-pair denominator cancels. The ratio is noisy with few windows: for
    white noise the 95th percentile of the Nyquist figure is ≈ 3.5 with 1 window, 2.2 with 4,
    1.5 with 16 and 1.2 with 64; read it together with the window count.

    Parameters
    ----------
    composites, surfaces
        ``float (N, 9, H, W)`` bands or ``uint8 (N, H, W, 3)`` false colour.
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud.

    Returns
    -------
    Artifacts
        ``nyquist``, ``half_nyquist``, ``windows`` (core windows), ``edge_nyquist``,
        ``edge_half_nyquist``, ``edge_windows``; NaN and 0 where no window fits.
    """
    pairs = _pairs(composites, surfaces, masks)
    comp, surf, cloud = _vis(pairs)
    eroded1 = _erode(cloud, 1)
    core = _erode(eroded1, CORE_EROSION - 1)
    return _artifacts(_core_spectrum(comp, core), _edge_spectrum(comp, surf, _ring(cloud, eroded1)))


def _artifacts(core: _Spectrum, edge: _Spectrum) -> Artifacts:
    return Artifacts(
        spike_ratio(core.power, NYQUIST_POINTS), spike_ratio(core.power, HALF_NYQUIST_POINTS), core.windows,
        spike_ratio(edge.power, NYQUIST_POINTS), spike_ratio(edge.power, HALF_NYQUIST_POINTS), edge.windows,
    )


def opacity(composite_vis: np.ndarray, surface_vis: np.ndarray) -> np.ndarray:
    """Per-pixel cloud opacity from visible reflectance: α = clip((R_c − R_s) / (1 − R_s), 0, 1).

    Parameters
    ----------
    composite_vis, surface_vis
        S3 reflectance of composite and surface (false colour: G / 255), same shape.

    Returns
    -------
    numpy.ndarray
        float32 α in 0..1; NaN where an input is NaN or the surface is saturated
        (R_s ≥ :data:`SATURATED`, i.e. 255 in 8 bit), where α is undefined.
    """
    c = np.asarray(composite_vis, np.float32)
    s = np.asarray(surface_vis, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.clip((c - s) / (np.float32(1.0) - s), 0.0, 1.0)
    alpha[~(s < np.float32(SATURATED))] = np.nan
    return alpha


def _edge_opacity(alpha: np.ndarray, ring: np.ndarray, core: np.ndarray) -> EdgeOpacity:
    usable = np.isfinite(alpha)
    ring_ok, core_ok = ring & usable, core & usable
    tiles = ring_ok.any(axis=(1, 2)) & core_ok.any(axis=(1, 2))
    if not tiles.any():
        return EdgeOpacity(math.nan, math.nan, math.nan, 0, 0, 0)
    ring_ok &= tiles[:, None, None]
    core_ok &= tiles[:, None, None]
    n_ring, n_core = int(np.count_nonzero(ring_ok)), int(np.count_nonzero(core_ok))
    ring_mean = float(np.sum(alpha, where=ring_ok, dtype=np.float64)) / n_ring
    core_mean = float(np.sum(alpha, where=core_ok, dtype=np.float64)) / n_core
    ratio = ring_mean / core_mean if core_mean > 0 else math.nan
    return EdgeOpacity(ratio, ring_mean, core_mean, n_ring, n_core, int(tiles.sum()))


def edge_opacity(composites: np.ndarray, surfaces: np.ndarray, masks: np.ndarray) -> EdgeOpacity:
    """Mean cloud opacity at the cloud edge divided by the mean opacity of the cloud core.

    Definition: opacity per pixel α = clip((R_c − R_s) / (1 − R_s), 0, 1) from S3 reflectance of
    composite R_c and surface R_s (false colour: (G_c − G_s) / (255 − G_s)); pixels whose surface
    is saturated (R_s ≥ 254.5/255) or NaN are left out (:func:`opacity`). The edge ring is the
    cloud pixels with at least one clear pixel among their 8 neighbours; the core is the mask
    eroded by 4 px (Chebyshev distance; the tile border is not an edge). Over the tiles that have
    both ring and core pixels, ``ratio = mean α(ring) / mean α(core)``, each mean pooled over the
    pixels of those tiles.

    A hard cut-out (constant opacity up to the mask edge) reads ≈ 1 (0.75–1 with texture); a
    cloud that fades out towards its edge reads ≤ 0.5.

    Parameters
    ----------
    composites, surfaces
        ``float (N, 9, H, W)`` bands or ``uint8 (N, H, W, 3)`` false colour.
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud.

    Returns
    -------
    EdgeOpacity
        ``ratio``, ``ring`` and ``core`` mean α, ``ring_pixels``, ``core_pixels``, ``tiles``;
        NaN and 0 where no tile has both a ring and a core (ratio NaN also for a core α of 0).
    """
    pairs = _pairs(composites, surfaces, masks)
    comp, surf, cloud = _vis(pairs)
    eroded1 = _erode(cloud, 1)
    return _edge_opacity(opacity(comp, surf), _ring(cloud, eroded1), _erode(eroded1, CORE_EROSION - 1))


def _ratio_of_sums(num: np.ndarray, den: np.ndarray) -> float:
    total = float(den.sum(dtype=np.float64))
    return float(num.sum(dtype=np.float64)) / total if den.size and total > 0 else math.nan


def spectral(
    composites: np.ndarray, surfaces: np.ndarray, masks: np.ndarray, snow: np.ndarray | None = None
) -> Spectral:
    """Spectral signature of the clouds: bright-and-cold fraction, S5/S3 against snow.

    Definition, over the cloud pixels of the set (pooled):

    * ``bright_cold_fraction``: share of the cloud pixels (S3 and S8 finite in composite and
      surface) whose composite is brighter than its surface in S3 *and* colder than its surface
      in S8 (brightness temperature) — what a real cloud over a warmer surface does.
    * ``s5_s3_cloud``: Σ S5 / Σ S3 of the composites over the cloud pixels with finite S3 and S5,
      i.e. the per-pixel ratio S5/S3 averaged with S3 as weight (robust to dark pixels where the
      ratio is noise). Water clouds reflect at 1.6 µm (high ratio), snow absorbs (low ratio).
    * ``s5_s3_snow``: the same over the snow pixels of the *surfaces* (snow mask given); NaN
      without a snow mask. ``s5_s3_cloud_minus_snow`` and ``s5_s3_cloud_over_snow`` compare them.

    False-colour inputs have no S5 or S8: every figure is NaN with a count of 0.

    Parameters
    ----------
    composites, surfaces
        ``float (N, 9, H, W)`` bands (or ``uint8 (N, H, W, 3)`` false colour: all NaN).
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud.
    snow
        Optional ``(N, H, W)`` snow masks of the surface pixels, 1 = snow.

    Returns
    -------
    Spectral
        The figures above with their pixel counts (``cloud_pixels``, ``s5_s3_cloud_pixels``,
        ``s5_s3_snow_pixels``).
    """
    pairs = _pairs(composites, surfaces, masks)
    return _spectral(pairs, _extra_mask(snow, pairs.masks.shape, "snow masks"))


def _spectral(pairs: _Pairs, snow: np.ndarray | None) -> Spectral:
    if pairs.kind == "false_colour":
        return Spectral(math.nan, 0, math.nan, 0, math.nan, 0, math.nan, math.nan)
    vis_c, vis_s = pairs.plane("composites", VIS_BAND), pairs.plane("surfaces", VIS_BAND)
    tir_c, tir_s = pairs.plane("composites", TIR_BAND), pairs.plane("surfaces", TIR_BAND)
    swir_c = pairs.plane("composites", SWIR_BAND)
    m = pairs.masks
    ok = m & np.isfinite(vis_c) & np.isfinite(vis_s) & np.isfinite(tir_c) & np.isfinite(tir_s)
    n_cloud = int(ok.sum())
    bright_cold = (vis_c > vis_s) & (tir_c < tir_s) & ok
    fraction = int(bright_cold.sum()) / n_cloud if n_cloud else math.nan
    ok5 = m & np.isfinite(vis_c) & np.isfinite(swir_c)
    cloud_ratio = _ratio_of_sums(swir_c[ok5], vis_c[ok5])
    snow_ratio, n_snow = math.nan, 0
    if snow is not None:
        swir_s = pairs.plane("surfaces", SWIR_BAND)
        ok_snow = snow & np.isfinite(vis_s) & np.isfinite(swir_s)
        n_snow = int(ok_snow.sum())
        snow_ratio = _ratio_of_sums(swir_s[ok_snow], vis_s[ok_snow])
    over = cloud_ratio / snow_ratio if snow_ratio > 0 else math.nan
    return Spectral(fraction, n_cloud, cloud_ratio, int(ok5.sum()), snow_ratio, n_snow,
                    cloud_ratio - snow_ratio, over)


# --------------------------------------------------------------------------- all figures


@dataclass(frozen=True)
class RealismFigures:
    """All realism figures of one set of composites (see :func:`realism_figures`)."""

    source: str
    n_tiles: int
    texture_slope: float
    texture_cv: float
    texture_windows: int
    texture_tiles: int
    nyquist_ratio: float
    half_nyquist_ratio: float
    edge_nyquist_ratio: float
    edge_half_nyquist_ratio: float
    edge_windows: int
    edge_opacity_ratio: float
    edge_opacity_ring: float
    edge_opacity_core: float
    edge_ring_pixels: int
    edge_core_pixels: int
    edge_tiles: int
    bright_cold_fraction: float
    cloud_pixels: int
    s5_s3_cloud: float
    s5_s3_cloud_pixels: int
    s5_s3_snow: float
    s5_s3_snow_pixels: int
    s5_s3_cloud_minus_snow: float
    s5_s3_cloud_over_snow: float
    detector_iou: float
    detector_iou_per_tile: float
    brightness_inside: float
    brightness_outside: float
    brightness_outside_abs: float

    def as_dict(self) -> dict[str, str | int | float | None]:
        """The figures as a plain dict; NaN becomes None (strict JSON; Dagster metadata drops it)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


_DETECTOR_KEYS = ("detector_iou", "detector_iou_per_tile", "brightness_inside", "brightness_outside",
                  "brightness_outside_abs")


def _detector(rgb: tuple[np.ndarray, np.ndarray] | None, masks: np.ndarray,
              shadows: np.ndarray | None) -> dict[str, float]:
    """Detector IoU and brightness figures of :mod:`cloudgan_core.quality` on false colour."""
    if rgb is None or masks.size == 0:
        return dict.fromkeys(_DETECTOR_KEYS, math.nan)
    comp, surf = rgb
    surface_b = brightness(surf)
    figures = blend_figures(comp, surface_b, masks)
    if shadows is not None:
        clear = change_figures(brightness(comp) - surface_b, masks | shadows)
        figures = replace(figures, brightness_outside=clear.outside, brightness_outside_abs=clear.outside_abs)
    return {key: getattr(figures, key) for key in _DETECTOR_KEYS}


def _rgb(pairs: _Pairs, false_colour: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The false-colour composites and surfaces for the detector figures, if there are any."""
    if pairs.kind == "false_colour":
        if false_colour is not None:
            raise CloudGANError("false_colour: the composites are false colour already; give them once")
        return pairs.composites, pairs.surfaces
    if false_colour is None:
        return None
    rgb = _pairs(*false_colour, pairs.masks)
    if rgb.kind != "false_colour":
        raise CloudGANError("false_colour: expected uint8 (N, H, W, 3) composites and surfaces")
    return rgb.composites, rgb.surfaces


def realism_figures(
    composites: np.ndarray,
    surfaces: np.ndarray,
    masks: np.ndarray,
    *,
    shadows: np.ndarray | None = None,
    snow: np.ndarray | None = None,
    false_colour: tuple[np.ndarray, np.ndarray] | None = None,
) -> RealismFigures:
    """All realism figures of a set of composites, computed in one pass.

    Parameters
    ----------
    composites
        ``float (N, 9, H, W)`` bands in the order :data:`BANDS` (S1–S6 reflectance, S7–S9
        brightness temperature K), or ``uint8 (N, H, W, 3)`` original false colour
        (G = S3 × 255).
    surfaces
        The clear surface under each composite, same shape and kind.
    masks
        ``(N, H, W)`` cloud masks, 1 = cloud.
    shadows
        Optional ``(N, H, W)`` cloud-shadow masks. Shadow pixels are left out of
        ``brightness_outside`` / ``brightness_outside_abs`` (they change the surface on purpose).
    snow
        Optional ``(N, H, W)`` snow masks of the surface pixels (for ``s5_s3_snow``).
    false_colour
        For band inputs: optional ``(composites, surfaces)`` as ``uint8 (N, H, W, 3)`` false
        colour, for the detector and brightness figures (NaN without). False-colour inputs are
        used for them directly.

    Returns
    -------
    RealismFigures
        ``source`` (``"bands"`` or ``"false_colour"``), ``n_tiles``; the :func:`texture` figures
        (``texture_slope``, ``texture_cv``, ``texture_windows``, ``texture_tiles``); the
        :func:`artifacts` figures (``nyquist_ratio``, ``half_nyquist_ratio`` on the texture windows,
        ``edge_nyquist_ratio``, ``edge_half_nyquist_ratio``, ``edge_windows``); the
        :func:`edge_opacity` figures (``edge_opacity_ratio``, ``edge_opacity_ring``,
        ``edge_opacity_core``, ``edge_ring_pixels``, ``edge_core_pixels``, ``edge_tiles``); the
        :func:`spectral` figures; and the figures of :func:`cloudgan_core.quality.quality_report`
        on the false colour: ``detector_iou`` (set-wide Otsu threshold), ``detector_iou_per_tile``,
        ``brightness_inside``, ``brightness_outside``, ``brightness_outside_abs`` (digital
        numbers, mean over the cloud / clear pixels).
    """
    pairs = _pairs(composites, surfaces, masks)
    grid = pairs.masks.shape
    shadow = _extra_mask(shadows, grid, "shadow masks")
    snow_mask = _extra_mask(snow, grid, "snow masks")
    comp, surf, cloud = _vis(pairs)
    eroded1 = _erode(cloud, 1)
    ring, core = _ring(cloud, eroded1), _erode(eroded1, CORE_EROSION - 1)
    core_spectrum = _core_spectrum(comp, core)
    tex = _texture(comp, core, core_spectrum)
    art = _artifacts(core_spectrum, _edge_spectrum(comp, surf, ring))
    edge = _edge_opacity(opacity(comp, surf), ring, core)
    spec = _spectral(pairs, snow_mask)
    return RealismFigures(
        source=pairs.kind,
        n_tiles=grid[0],
        texture_slope=tex.slope,
        texture_cv=tex.cv,
        texture_windows=tex.windows,
        texture_tiles=tex.tiles,
        nyquist_ratio=art.nyquist,
        half_nyquist_ratio=art.half_nyquist,
        edge_nyquist_ratio=art.edge_nyquist,
        edge_half_nyquist_ratio=art.edge_half_nyquist,
        edge_windows=art.edge_windows,
        edge_opacity_ratio=edge.ratio,
        edge_opacity_ring=edge.ring,
        edge_opacity_core=edge.core,
        edge_ring_pixels=edge.ring_pixels,
        edge_core_pixels=edge.core_pixels,
        edge_tiles=edge.tiles,
        **asdict(spec),
        **_detector(_rgb(pairs, false_colour), pairs.masks, shadow),
    )
