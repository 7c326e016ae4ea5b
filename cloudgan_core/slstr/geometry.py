"""Solar geometry on the 500 m image grid, interpolated from the tie-point grid.

The tie grid (``geometry_tn.nc``, 16 km across x 1 km along track) is related to the image grids
through the ``track_offset`` and ``resolution`` global attributes:

- tie column ``j = tn_offset + (c - an_offset) * res_an_across / res_tn_across``
- tie row ``i = r * res_an_along / res_tn_along``

All grids start on the same along-track line, so image row ``r`` lies at tie row
``r * res_an / res_tn`` with no half-pixel shift, exactly like the across-track mapping. On the
real product in ``shared/slstr-real`` this is what the L1 processor's own day flags (day <=> SZA <
90 deg) say: the interpolated angle contradicts the day bit on 11 of 7.2 million pixels (9 in
float64 arithmetic; all within 0.015 deg of 90), against 991 with a half-pixel shift
``i = (r + 0.5) * res_an / res_tn - 0.5``.

Bilinear interpolation on the tie grid is enough for these smooth fields (no spline regrid). The
tie grid must have at least two rows and two columns and cover the image grid to within one tie
step at each edge; a tie row with fewer than two finite values gives no angle (NaN) rather than a
value constant across track.

:func:`solar_zenith` keeps its last result for the process: the masks and the false-colour
stages of one product (run one after the other in one process by default) interpolate it once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.product import Product

GEOMETRY_FILE = "geometry_tn.nc"

_last_sza: tuple[tuple[object, ...], np.ndarray] | None = None
_last_sza_lock = threading.Lock()


def parse_resolution(value: object, source: str = "") -> tuple[float, float]:
    """Parse a ``resolution`` attribute such as ``"[ 500 500 ]"`` into (across, along) metres."""
    try:
        parts = [float(v) for v in str(value).strip("[] \n").split()]
    except ValueError:
        parts = []
    if len(parts) != 2 or not all(0 < v < np.inf for v in parts):
        raise ProductError(source, f"cannot parse resolution attribute {value!r}; expected '[ across along ]'")
    return parts[0], parts[1]


def grid_attrs(attrs: Mapping[str, object], source: str) -> tuple[float, tuple[float, float]]:
    """``(track_offset, (res_across, res_along))`` from a file's global attributes."""
    if "track_offset" not in attrs or "resolution" not in attrs:
        raise ProductError(source, "global attributes track_offset/resolution missing; cannot place the grid")
    try:
        offset = float(np.asarray(attrs["track_offset"]).item())
    except (TypeError, ValueError):
        offset = float("nan")
    if not np.isfinite(offset):
        raise ProductError(source, f"track_offset attribute {attrs['track_offset']!r} is not a finite number")
    return offset, parse_resolution(attrs["resolution"], source)


def fill_nan_columns(tie: np.ndarray) -> np.ndarray:
    """Fill NaNs in each row by linear interpolation between valid tie columns.

    Edge NaNs (the tie grid's last columns are often NaN) take the value of the nearest valid
    column. A row with fewer than two finite values cannot be interpolated across track and
    becomes NaN throughout (one value would make the angle constant across the swath).
    """
    out = np.array(tie, dtype=np.float64, copy=True)
    out[~np.isfinite(out)] = np.nan
    bad_rows = np.flatnonzero(np.isnan(out).any(axis=1))
    cols = np.arange(out.shape[1], dtype=np.float64)
    for r in bad_rows:
        ok = ~np.isnan(out[r])
        if np.count_nonzero(ok) < 2:
            out[r] = np.nan
        else:
            out[r, ~ok] = np.interp(cols[~ok], cols[ok], out[r, ok])
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _coords(n_out: int, n_tie: int, start: float, step: float, *, axis: str, unit: str,
            source: str) -> tuple[np.ndarray, np.ndarray]:
    """Tie index and weight of each of ``n_out`` image positions ``start + k * step``.

    Positions may lie up to one tie step outside the tie grid (linear extrapolation at the
    edges, as the image grid ends up to one tie step after the last tie row); further out the
    grids do not belong together.
    """
    if n_tie < 2:
        raise ProductError(source, f"cannot interpolate {axis} track with {_plural(n_tie, unit)} in the tie grid; "
                                   "at least 2 are needed")
    first, last = start, start + (n_out - 1) * step
    if not (-1.0 <= first and last <= n_tie):  # NaN (from a broken attribute) fails too
        raise ProductError(source, f"the tie grid has {_plural(n_tie, unit)} but the image grid of "
                                   f"{_plural(n_out, unit)} needs tie {unit}s {first:g} to {last:g}: the tie grid "
                                   f"does not cover the image (files from different products, or cut short)")
    pos = start + np.arange(n_out, dtype=np.float64) * step
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n_tie - 2)
    return i0, pos - i0  # weights outside [0, 1] extrapolate linearly at the edges


def tie_to_image(tie: np.ndarray, shape: tuple[int, int], *, tn_offset: float, tn_res: tuple[float, float],
                 im_offset: float, im_res: tuple[float, float], source: str = GEOMETRY_FILE) -> np.ndarray:
    """Bilinearly interpolate a tie-point field to an image grid of ``shape``; float32.

    Image pixel ``(r, c)`` sits at tie row ``r * im_res[1] / tn_res[1]`` and tie column
    ``tn_offset + (c - im_offset) * im_res[0] / tn_res[0]``. Along track first, on the tie
    columns (float64, small), then across track onto the image columns (float32), so the full-size
    work is two gathers, a multiply and an add.

    Raises
    ------
    ProductError
        (naming ``source``) The tie grid has fewer than 2 rows or columns or does not cover
        ``shape``.
    """
    rows, cols = shape
    if tie.ndim != 2:
        raise ProductError(source, f"the tie-point field is {tie.ndim}-D {tie.shape}; expected (rows, columns)")
    step_c = im_res[0] / tn_res[0]
    j0, wj = _coords(cols, tie.shape[1], tn_offset - im_offset * step_c, step_c, axis="across", unit="column",
                     source=source)
    step_r = im_res[1] / tn_res[1]
    i0, wi = _coords(rows, tie.shape[0], 0.0, step_r, axis="along", unit="row", source=source)
    tie = fill_nan_columns(tie)
    along = (tie[i0] * (1.0 - wi)[:, None] + tie[i0 + 1] * wi[:, None]).astype(np.float32)  # (rows, tie cols)
    slope = along[:, 1:] - along[:, :-1]
    out = np.take(along, j0, axis=1)  # C order (along[:, j0] would be Fortran order: slow row blocks later)
    out += np.take(slope, j0, axis=1) * wj.astype(np.float32)
    return out


def solar_zenith(product: Product, shape: tuple[int, int], image_file: str = "flags_an.nc", *,
                 image_grid: tuple[float, tuple[float, float]] | None = None) -> np.ndarray:
    """Solar zenith angle (degrees, float32, read-only) on the grid of ``image_file`` (default: 500 m ``an``).

    ``image_grid``: that grid's ``(track_offset, (res_across, res_along))`` (:func:`grid_attrs`)
    when the caller has read them already; otherwise they are read from ``image_file``.

    The last result is kept for the process and returned again (the same read-only array) while
    the geometry file, the grid and the shape are the same (:meth:`Product.file_key`: a changed or
    replaced file is read again).
    """
    global _last_sza
    if image_grid is None:
        with product.open_netcdf(image_file) as nc:
            image_grid = grid_attrs(nc.attrs, nc.label)
    key = (product.file_key(GEOMETRY_FILE), image_grid, tuple(shape))
    with _last_sza_lock:
        if _last_sza is not None and _last_sza[0] == key:
            return _last_sza[1]
    im_offset, im_res = image_grid
    with product.open_netcdf(GEOMETRY_FILE, ["solar_zenith_tn"]) as nc:
        tn_offset, tn_res = grid_attrs(nc.attrs, nc.label)
        tie = nc.read_unpacked("solar_zenith_tn", np.float64)
    sza = tie_to_image(tie, shape, tn_offset=tn_offset, tn_res=tn_res, im_offset=im_offset, im_res=im_res,
                       source=nc.label)
    if np.isnan(sza[:, 0]).all():  # each row is finite or NaN throughout (see fill_nan_columns)
        raise ProductError(nc.label, "solar_zenith_tn gives no angle anywhere (NaN, or fewer than two finite values "
                                     "per tie row)")
    sza.setflags(write=False)
    with _last_sza_lock:
        _last_sza = (key, sza)
    return sza
