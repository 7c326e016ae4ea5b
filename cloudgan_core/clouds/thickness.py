r"""Cloud optical-thickness fields: every cloud generator yields tau(x, y) and a cloud-top height.

A :class:`CloudField` is the one cloud model the renderer (:mod:`.renderer`) understands: the optical
thickness tau >= 0 at 0.55 um per pixel (tau = 0 exactly where the mask is clear) and the
cloud-top height h in km (one value per tile, or a field). Two generators make one from a mask:

Procedural clouds (:func:`procedural_thickness`)
------------------------------------------------
1. A Gaussian random field f with zero mean, unit variance and a 2-D radial power spectrum
   P(k) ~ k^-beta (:func:`fractal_field`): white noise filtered by k^(-beta/2) in Fourier space.
   Cloud liquid water has a 1-D (transect) spectrum ~ k^-5/3 (Cahalan & Snider, 1989); the
   radially averaged 2-D spectrum of an isotropic field then falls as k^-(5/3 + 1), so the
   default is beta = 8/3.
2. A log-normal thickness with mean mu_tau and log-spread sigma (the distribution of cloud
   optical thickness is strongly skewed, close to a gamma or log-normal law; Barker et al., 1996):

       tau_f = mu_tau exp(sigma f - sigma^2 / 2)          (E[tau_f] = mu_tau)

3. Thin edges, thick core: with d the Euclidean distance (px) from a cloudy pixel to the nearest
   clear pixel (1 on the boundary ring) and w the edge width,

       tau = max(tau_min, tau_f S(d / w))  inside the mask,   tau = 0 outside,
       S(x) = 3 x^2 - 2 x^3 for 0 <= x <= 1, S = 1 beyond       (smoothstep)

   so tau rises smoothly over w pixels from the boundary, and the floor tau_min keeps every mask
   pixel visibly cloudy (tau = 0.3 adds ~7 digital numbers to the 8-bit S3 of a dark surface).
   A mask that touches the tile border is not thinned there (the cloud goes on outside).

The GAN path (:func:`thickness_from_reflectance`)
-------------------------------------------------
The generator's output brightness is read as the reflectance of the cloud over a black surface in
S3 (its false-colour G channel is S3 reflectance x 255) and inverted to tau through the same
radiative model the renderer uses (:func:`.optics.invert_reflectance`, analytic), clipped to
``tau_max``; inside the mask the same floor tau_min applies.

References
----------
- Cahalan, R. F. & Snider, J. B. (1989), Marine stratocumulus structure, Remote Sens. Environ.
  28, 95-107.
- Barker, H. W., Wielicki, B. A. & Parker, L. (1996), A parameterization for computing grid-
  averaged solar fluxes for inhomogeneous marine boundary layer clouds. Part II, J. Atmos. Sci.
  53, 2304-2316.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from cloudgan_core.clouds.bands import (CloudModelError, Geometry, as_field, as_mask, check_range)
from cloudgan_core.clouds.optics import DEFAULT_OPTICS, CloudOptics, invert_reflectance

#: Default floor of tau inside a mask (every cloudy pixel changes an 8-bit surface pixel).
MIN_TAU = 0.3
#: Highest cloud top the model accepts, km.
MAX_TOP_HEIGHT_KM = 20.0
#: Largest field side and pixel count :func:`fractal_field` makes.
MAX_SIDE, MAX_PIXELS = 16384, 64 * 1024 * 1024


def check_height(top_height_km: object, shape: tuple[int, int]) -> float | np.ndarray:
    """A cloud-top height in km: a float, or a finite float32 field of ``shape``, within 0-20 km."""
    if np.ndim(top_height_km) == 0:
        return check_range("top_height_km", top_height_km, 0.0, MAX_TOP_HEIGHT_KM, " km")
    h = as_field(top_height_km, "top_height_km", shape)
    if h.max() > MAX_TOP_HEIGHT_KM:
        raise CloudModelError(f"top_height_km must be <= {MAX_TOP_HEIGHT_KM:g} km, found {float(h.max()):g} km")
    return h


@dataclass(frozen=True)
class CloudField:
    """A cloud for one tile: optical thickness and cloud-top height.

    Parameters
    ----------
    tau
        Optical thickness at 0.55 um, (H, W), finite and >= 0; stored as float32. 0 = clear.
    top_height_km
        Cloud-top height above the surface, km, 0-20: one value for the tile or an (H, W) field.
    """

    tau: np.ndarray
    top_height_km: float | np.ndarray = 2.0

    def __post_init__(self) -> None:
        tau = as_field(self.tau, "tau")
        object.__setattr__(self, "tau", tau)
        object.__setattr__(self, "top_height_km", check_height(self.top_height_km, tau.shape))

    @property
    def mask(self) -> np.ndarray:
        """Cloud mask, bool (H, W): tau > 0."""
        return self.tau > 0


def _check_shape(shape: object) -> tuple[int, int]:
    try:
        rows, cols = (int(n) for n in shape)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise CloudModelError(f"shape must be (rows, cols), got {shape!r}") from None
    if not (2 <= rows <= MAX_SIDE and 2 <= cols <= MAX_SIDE) or rows * cols > MAX_PIXELS:
        raise CloudModelError(f"shape {(rows, cols)} is outside 2..{MAX_SIDE} px per side / {MAX_PIXELS} px")
    return rows, cols


def fractal_field(shape: tuple[int, int], slope: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field with a 2-D radial power spectrum ~ k^-slope; zero mean, unit std.

    Parameters
    ----------
    shape
        (rows, cols), 2-16384 px each.
    slope
        Power-spectral exponent beta of the radially averaged 2-D spectrum, 0-6 (8/3 for cloud
        liquid water; a 1-D transect then has slope beta - 1).
    rng
        Source of the white noise; the same generator state gives the same bytes.

    Returns
    -------
    numpy.ndarray
        float32 (rows, cols), sample mean 0 and sample standard deviation 1.
    """
    rows, cols = _check_shape(shape)
    slope = check_range("slope", slope, 0.0, 6.0)
    if not isinstance(rng, np.random.Generator):
        raise CloudModelError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    spec = np.fft.rfft2(rng.standard_normal((rows, cols), dtype=np.float32))
    ky = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(cols).astype(np.float32)[None, :]
    k2 = ky * ky + kx * kx
    k2[0, 0] = 1.0
    spec *= k2 ** np.float32(-slope / 4.0)  # amplitude k^(-slope/2) -> power k^-slope
    spec[0, 0] = 0.0
    field = np.fft.irfft2(spec, s=(rows, cols)).astype(np.float32, copy=False)
    field -= field.mean(dtype=np.float64)
    std = float(field.std(dtype=np.float64))
    if std > 0:
        field /= np.float32(std)
    return field


@dataclass(frozen=True)
class ProceduralClouds:
    """Settings of :func:`procedural_thickness` (module docstring for the model).

    Parameters
    ----------
    mean_tau
        mu_tau, the mean optical thickness of the cloud core, 0.5-150 (10: stratocumulus).
    tau_spread
        sigma, the standard deviation of ln tau, 0-2 (0.6: relative standard deviation 0.66, i.e. a
        gamma shape of ~2.3, within the range Barker et al. 1996 report for marine boundary-layer
        cloud; the core's 10-90 % range is 0.39-1.8 mu_tau).
    spectral_slope
        beta of the 2-D radial power spectrum, 1-5 (8/3: Cahalan & Snider 1989).
    edge_width
        w, px: distance from the cloud boundary over which tau rises to the core, 0-128
        (0 = no taper; 8 px = 4 km at 500 m).
    min_tau
        tau_min, the floor inside the mask, 0.05-5 and below ``mean_tau``.
    top_height_km
        Cloud-top height, km, 0-20 (2 km: boundary-layer cloud).
    """

    mean_tau: float = 10.0
    tau_spread: float = 0.6
    spectral_slope: float = 8.0 / 3.0
    edge_width: float = 8.0
    min_tau: float = MIN_TAU
    top_height_km: float = 2.0

    def __post_init__(self) -> None:
        limits = {"mean_tau": (0.5, 150.0), "tau_spread": (0.0, 2.0), "spectral_slope": (1.0, 5.0),
                  "edge_width": (0.0, 128.0), "min_tau": (0.05, 5.0), "top_height_km": (0.0, MAX_TOP_HEIGHT_KM)}
        for name, (low, high) in limits.items():
            object.__setattr__(self, name, check_range(name, getattr(self, name), low, high))
        if self.min_tau >= self.mean_tau:
            raise CloudModelError(f"min_tau ({self.min_tau:g}) must be below mean_tau ({self.mean_tau:g})")


def edge_taper(mask: np.ndarray, edge_width: float) -> np.ndarray:
    """S(d / w): 0 outside ``mask``, rising smoothly from the boundary to 1 at ``edge_width`` px; float32."""
    m = as_mask(mask)
    if edge_width <= 0 or m.all():
        return m.astype(np.float32)
    x = distance_transform_edt(m).astype(np.float32)
    x *= np.float32(1.0 / edge_width)
    np.minimum(x, np.float32(1.0), out=x)
    return x * x * (np.float32(3.0) - np.float32(2.0) * x)


def procedural_thickness(mask: np.ndarray, config: ProceduralClouds, rng: np.random.Generator) -> CloudField:
    """A log-normal fractal cloud shaped by ``mask``: thin at the boundary, thick in the core.

    Parameters
    ----------
    mask
        (H, W) bool or 0/1 integers, 1 = cloud.
    config
        The field's statistics and edge shape.
    rng
        Random source; one field is drawn per call whatever the mask holds, so a sequence of
        tiles drawn from one generator does not depend on their masks.

    Returns
    -------
    CloudField
        tau float32 (0 exactly outside the mask, >= ``config.min_tau`` inside) and the
        configured top height.
    """
    m = as_mask(mask)
    sigma = config.tau_spread
    tau = fractal_field(m.shape, config.spectral_slope, rng)
    tau *= np.float32(sigma)
    tau -= np.float32(0.5 * sigma * sigma)
    np.exp(tau, out=tau)
    tau *= np.float32(config.mean_tau)
    tau *= edge_taper(m, config.edge_width)
    np.maximum(tau, np.float32(config.min_tau), out=tau)
    tau[~m] = 0.0
    return CloudField(tau, config.top_height_km)


def thickness_from_reflectance(reflectance: np.ndarray, geometry: Geometry, *, mask: np.ndarray | None = None,
                               band: str = "S3", top_height_km: float | np.ndarray = 2.0, min_tau: float = MIN_TAU,
                               tau_max: float = 100.0, optics: CloudOptics = DEFAULT_OPTICS) -> CloudField:
    """tau from a cloud's reflectance over a black surface (the GAN path), via the renderer's model.

    Parameters
    ----------
    reflectance
        (H, W) float reflectance of the cloud alone in ``band`` (for a generated 8-bit false-colour
        tile: ``rgb[..., 1] / 255.0``, the S3 channel). Integer arrays are refused so digital
        numbers are not mistaken for reflectance.
    geometry
        Sun and view angles the tau is meant for (the inversion depends on mu0 + mu).
    mask
        Optional cloud mask: tau is 0 outside it and at least ``min_tau`` inside.
    band
        Reflective band the reflectance is in (default S3).
    top_height_km
        Cloud-top height, km (also used to undo the water-vapour attenuation of S4).
    min_tau
        Floor of tau inside ``mask``, 0-5.
    tau_max
        tau given to reflectances at or above the cloud's asymptotic reflectance.
    """
    arr = np.asarray(reflectance)
    if arr.dtype.kind != "f":
        raise CloudModelError(f"reflectance must be a float array (for 8-bit digital numbers divide by 255), "
                              f"got dtype {arr.dtype}")
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise CloudModelError(f"reflectance must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise CloudModelError(f"reflectance has {int((~np.isfinite(arr)).sum())} non-finite values")
    min_tau = check_range("min_tau", min_tau, 0.0, 5.0)
    height = check_height(top_height_km, arr.shape)
    tau = invert_reflectance(arr, band, geometry, top_height_km=height, tau_max=tau_max, optics=optics)
    if mask is not None:
        m = as_mask(mask)
        if m.shape != arr.shape:
            raise CloudModelError(f"mask is {m.shape} but reflectance is {arr.shape}")
        tau = np.where(m, np.maximum(tau, np.float32(min_tau)), np.float32(0.0))
    return CloudField(tau, height)
