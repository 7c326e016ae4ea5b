"""Brightness temperature of the thermal bands S7-S9 on the 500 m image grid.

``S{7,8,9}_BT_in.nc`` holds ``S{n}_BT_in``, the nadir-view brightness temperature in kelvin on the
1 km ``in`` grid, CF-packed (the real S8: int16, scale_factor 0.01, add_offset 283.73,
_FillValue -32768). The ``in`` grid is the 500 m ``an`` grid at half the resolution from the same
first line and the same across-track origin (its ``track_offset`` is half the ``an`` grid's, its
``resolution`` twice), so ``an`` pixel ``(r, c)`` lies in ``in`` pixel ``(r // 2, c // 2)``. Each
1 km value is repeated over its 2 x 2 pixels (no interpolation: it is one 1 km measurement) and
the result is cut to the ``an`` shape (the real product: 2396 x 3000 ``an``, 1198 x 1500 ``in``).

Fill and values that are not a temperature become NaN; a band with no value anywhere, a grid of
another shape or placement, and values outside :data:`KELVIN_RANGE` (a broken scale or offset)
are a :class:`~cloudgan_core.errors.ProductError` naming the file.
"""

from __future__ import annotations

import numpy as np

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.geometry import grid_attrs
from cloudgan_core.slstr.product import THERMAL_BANDS, Product

#: Range a finite brightness temperature must lie in, K (open interval). Anything outside is no
#: temperature of the Earth (a wrong ``scale_factor``/``add_offset``), not a cold or hot pixel.
KELVIN_RANGE = (0.0, 1000.0)


def half_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The ``in`` grid shape that covers an ``an`` grid of ``shape``: each side halved, rounded up."""
    return (shape[0] + 1) // 2, (shape[1] + 1) // 2


def brightness_temperature(product: Product, band: str, shape: tuple[int, int], *,
                           image_grid: tuple[float, tuple[float, float]],
                           out: np.ndarray | None = None) -> np.ndarray:
    """Brightness temperature (K, float32) of ``band`` on the 500 m ``an`` grid of ``shape``.

    Parameters
    ----------
    band
        ``"S7"``, ``"S8"`` or ``"S9"``.
    shape
        ``(rows, columns)`` of the ``an`` grid.
    image_grid
        The ``an`` grid's ``(track_offset, (res_across, res_along))``
        (:func:`~cloudgan_core.slstr.geometry.grid_attrs` of ``flags_an.nc``).
    out
        float32 array of ``shape`` to write into (a plane of a bands array, say); returned.

    Raises
    ------
    ProductError
        (naming ``S{n}_BT_in.nc``) The file or variable is missing or unreadable; the grid is not
        2-D of :func:`half_shape` ``(shape)``; its ``track_offset``/``resolution`` do not make it
        the ``an`` grid at half resolution; no pixel has a value (fill everywhere); or a value lies
        outside :data:`KELVIN_RANGE`.
    """
    if band not in THERMAL_BANDS:
        raise ValueError(f"band must be one of {THERMAL_BANDS}, not {band!r}")
    fname, var = f"{band}_BT_in.nc", f"{band}_BT_in"
    expected = half_shape(shape)
    with product.open_netcdf(fname, [var]) as nc:
        if nc.shape(var) != expected:
            raise ProductError(nc.label, f"{var} is {nc.shape(var)}; the 1 km grid of a {shape[0]} x {shape[1]} "
                                         f"500 m image must be {expected[0]} x {expected[1]}")
        offset, res = grid_attrs(nc.attrs, nc.label)
        im_offset, im_res = image_grid
        if offset * 2 != im_offset or res != (2 * im_res[0], 2 * im_res[1]):
            raise ProductError(nc.label, f"the 1 km grid (track_offset {offset:g}, resolution {res[0]:g} x "
                                         f"{res[1]:g} m) is not the 500 m grid (track_offset {im_offset:g}, "
                                         f"resolution {im_res[0]:g} x {im_res[1]:g} m) at half resolution; cannot "
                                         f"place {var} on it")
        bt = nc.read_unpacked(var)
        label = nc.label
    finite = np.isfinite(bt)
    n_finite = int(np.count_nonzero(finite))
    if n_finite == 0:
        raise ProductError(label, f"{var} has no value: fill (or not finite) on all {bt.size} pixels")
    low, high = KELVIN_RANGE
    outside = finite & ~((bt > low) & (bt < high))
    if outside.any():
        bad = bt[outside]
        raise ProductError(label, f"{var} has {bad.size} values outside {low:g}-{high:g} K (from {float(bad.min()):g} "
                                  f"to {float(bad.max()):g} K): not a brightness temperature in kelvin (a wrong "
                                  f"scale_factor or add_offset?)")
    if n_finite != bt.size:
        bt[~finite] = np.nan  # inf from a broken scale: no value
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {shape}, not {out.dtype} {out.shape}")
    rows, cols = shape
    for dr in (0, 1):
        for dc in (0, 1):
            out[dr::2, dc::2] = bt[: (rows - dr + 1) // 2, : (cols - dc + 1) // 2]
    return out
