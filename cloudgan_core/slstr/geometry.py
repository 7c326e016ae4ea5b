"""Solar geometry on the 500 m image grid, interpolated from the tie-point grid.

The tie grid (``geometry_tn.nc``, 16 km across x 1 km along track) is related to the image grids
through the ``track_offset`` and ``resolution`` global attributes:

- tie column ``j = tn_offset + (c - an_offset) * res_an_across / res_tn_across``
- tie row ``i = (r + 0.5) * res_an_along / res_tn_along - 0.5``

Bilinear interpolation on the tie grid is enough for these smooth fields (no spline regrid).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.product import Product

GEOMETRY_FILE = "geometry_tn.nc"


def parse_resolution(value: object, source: str = "") -> tuple[float, float]:
    """Parse a ``resolution`` attribute such as ``"[ 500 500 ]"`` into (across, along) metres."""
    try:
        parts = [float(v) for v in str(value).strip("[] \n").split()]
    except ValueError:
        parts = []
    if len(parts) != 2 or min(parts) <= 0:
        raise ProductError(source, f"cannot parse resolution attribute {value!r}; expected '[ across along ]'")
    return parts[0], parts[1]


def grid_attrs(attrs: Mapping[str, object], source: str) -> tuple[float, tuple[float, float]]:
    """``(track_offset, (res_across, res_along))`` from a file's global attributes."""
    if "track_offset" not in attrs or "resolution" not in attrs:
        raise ProductError(source, "global attributes track_offset/resolution missing; cannot place the grid")
    return float(np.asarray(attrs["track_offset"]).item()), parse_resolution(attrs["resolution"], source)


def fill_nan_columns(tie: np.ndarray) -> np.ndarray:
    """Fill NaNs in each row by linear interpolation between valid tie columns.

    Edge NaNs (the tie grid's last columns are often NaN) take the value of the nearest valid
    column. A row that is NaN throughout stays NaN.
    """
    out = np.array(tie, dtype=np.float64, copy=True)
    bad_rows = np.flatnonzero(np.isnan(out).any(axis=1))
    cols = np.arange(out.shape[1], dtype=np.float64)
    for r in bad_rows:
        ok = ~np.isnan(out[r])
        if ok.any():
            out[r, ~ok] = np.interp(cols[~ok], cols[ok], out[r, ok])
    return out


def _coords(n_out: int, n_tie: int, start: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    pos = start + np.arange(n_out, dtype=np.float64) * step
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n_tie - 2)
    return i0, pos - i0  # weights outside [0, 1] extrapolate linearly at the edges


def tie_to_image(tie: np.ndarray, shape: tuple[int, int], *, tn_offset: float, tn_res: tuple[float, float],
                 im_offset: float, im_res: tuple[float, float]) -> np.ndarray:
    """Bilinearly interpolate a tie-point field to an image grid of ``shape``; float32."""
    rows, cols = shape
    tie = fill_nan_columns(tie)
    step_c = im_res[0] / tn_res[0]
    j0, wj = _coords(cols, tie.shape[1], tn_offset - im_offset * step_c, step_c)
    step_r = im_res[1] / tn_res[1]
    i0, wi = _coords(rows, tie.shape[0], 0.5 * step_r - 0.5, step_r)
    across = tie[:, j0] * (1.0 - wj) + tie[:, j0 + 1] * wj  # (tie rows, cols)
    across = across.astype(np.float32)
    wi32 = wi.astype(np.float32)[:, None]
    return across[i0] * (1.0 - wi32) + across[i0 + 1] * wi32


def solar_zenith(product: Product, shape: tuple[int, int], image_file: str = "flags_an.nc") -> np.ndarray:
    """Solar zenith angle (degrees, float32) on the grid of ``image_file`` (default: 500 m ``an``)."""
    with product.open_dataset(image_file) as ds:
        im_offset, im_res = grid_attrs(ds.attrs, product.describe(image_file))
    with product.open_dataset(GEOMETRY_FILE, ["solar_zenith_tn"]) as ds:
        tn_offset, tn_res = grid_attrs(ds.attrs, product.describe(GEOMETRY_FILE))
        tie = np.asarray(ds["solar_zenith_tn"].values, dtype=np.float64)
    if np.isnan(tie).all():
        raise ProductError(product.describe(GEOMETRY_FILE), "solar_zenith_tn is NaN everywhere")
    return tie_to_image(tie, shape, tn_offset=tn_offset, tn_res=tn_res, im_offset=im_offset, im_res=im_res)
