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
#: The ``geometry_tn.nc`` field of each angle, by the name the pipeline gives it (degrees; zenith
#: from the local vertical, azimuth clockwise from north).
ANGLE_FIELDS: dict[str, str] = {"solar_zenith": "solar_zenith_tn", "solar_azimuth": "solar_azimuth_tn",
                                "view_zenith": "sat_zenith_tn", "view_azimuth": "sat_azimuth_tn"}

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

    The values are those of :func:`numpy.interp` row by row, computed once per pattern of NaN
    columns for all the rows that share it (usually every row: the same edge columns).
    """
    out = np.array(tie, dtype=np.float64, copy=True)
    out[~np.isfinite(out)] = np.nan
    missing = np.isnan(out)
    bad_rows = np.flatnonzero(missing.any(axis=1))
    if not bad_rows.size:
        return out
    by_pattern: dict[bytes, list[int]] = {}
    for r in bad_rows.tolist():
        by_pattern.setdefault(missing[r].tobytes(), []).append(r)
    cols = np.arange(out.shape[1], dtype=np.float64)
    for rows in by_pattern.values():
        pattern = missing[rows[0]]
        ok = np.flatnonzero(~pattern)
        if ok.size < 2:
            out[rows] = np.nan
            continue
        gaps = np.flatnonzero(pattern)
        j = np.clip(np.searchsorted(ok, gaps) - 1, 0, ok.size - 2)
        left, right = ok[j], ok[j + 1]
        block = out[rows]
        a, b = block[:, left], block[:, right]
        slope = (b - a) / (cols[right] - cols[left])
        filled = slope * (cols[gaps] - cols[left]) + a  # numpy.interp's formula between two valid columns
        filled = np.where(gaps < ok[0], a, np.where(gaps > ok[-1], b, filled))  # edges: the nearest valid one
        block[:, gaps] = filled
        out[rows] = block
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


def _tile_weights(i0: np.ndarray, w: np.ndarray, n_tiles: int, size: int, n_tie: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean interpolation weights of each tile's ``size`` image positions on the tie points, float64
    ``(n_tiles, n_tie)``, and which tie points its positions touch (bool, the same shape; a point
    with weight 0 counts, as it does in :func:`tie_to_image`)."""
    n = n_tiles * size
    cell = np.repeat(np.arange(n_tiles, dtype=np.int64) * n_tie, size) + i0[:n]
    weights = (np.bincount(cell, weights=1.0 - w[:n], minlength=n_tiles * n_tie)
               + np.bincount(cell + 1, weights=w[:n], minlength=n_tiles * n_tie)) / size
    touched = np.zeros(n_tiles * n_tie, bool)
    touched[cell] = touched[cell + 1] = True
    return weights.reshape(n_tiles, n_tie), touched.reshape(n_tiles, n_tie)


def tile_angles(product: Product, shape: tuple[int, int], size: int, *,
                image_grid: tuple[float, tuple[float, float]]) -> dict[str, np.ndarray]:
    """Mean solar and view angles (degrees, float64) of every ``size`` x ``size`` tile of the image grid.

    Tiles are cut from the top-left corner as :func:`cloudgan_core.tiles.slice_tiles` cuts them
    (``rows // size`` x ``cols // size``, row by row); each mean is over the tile's pixels of the
    bilinear interpolation of :func:`tie_to_image` (computed exactly, as interpolation weights
    averaged per tile, without interpolating the full grid). Azimuths are averaged as directions
    (the angle of the mean unit vector of the interpolated sine and cosine), so 359 and 1 deg
    average to 0, not 180.

    Parameters
    ----------
    shape
        ``(rows, columns)`` of the image grid.
    image_grid
        Its ``(track_offset, (res_across, res_along))`` (:func:`grid_attrs`).

    Returns
    -------
    dict
        The keys of :data:`ANGLE_FIELDS`, each ``(n_tiles,)``; NaN for a tile that touches a tie
        row with fewer than two finite values (see :func:`fill_nan_columns`).

    Raises
    ------
    ProductError
        (naming ``geometry_tn.nc``) A field is missing, not 2-D, of another shape than
        ``solar_zenith_tn``, has no finite value, or the tie grid does not cover the image.
    """
    rows, cols = shape
    nr, nc_ = rows // size, cols // size
    im_offset, im_res = image_grid
    with product.open_netcdf(GEOMETRY_FILE, list(ANGLE_FIELDS.values())) as nc:
        tn_offset, tn_res = grid_attrs(nc.attrs, nc.label)
        ties = {name: nc.read_unpacked(field, np.float64) for name, field in ANGLE_FIELDS.items()}
        label = nc.label
    tie_shape = ties["solar_zenith"].shape
    for name, tie in ties.items():
        if tie.ndim != 2 or tie.shape != tie_shape:
            raise ProductError(label, f"{ANGLE_FIELDS[name]} is {tie.shape}; expected 2-D (rows, columns) like "
                                      f"solar_zenith_tn {tie_shape}")
        if not np.isfinite(tie).any():
            raise ProductError(label, f"{ANGLE_FIELDS[name]} has no finite value (fill everywhere)")
    step_c = im_res[0] / tn_res[0]
    j0, wj = _coords(cols, tie_shape[1], tn_offset - im_offset * step_c, step_c, axis="across", unit="column",
                     source=label)
    i0, wi = _coords(rows, tie_shape[0], 0.0, im_res[1] / tn_res[1], axis="along", unit="row", source=label)
    a, a_touched = _tile_weights(i0, wi, nr, size, tie_shape[0])
    b, _ = _tile_weights(j0, wj, nc_, size, tie_shape[1])

    def tile_means(tie: np.ndarray) -> np.ndarray:
        filled = fill_nan_columns(tie)  # each row finite or NaN throughout
        bad_row = np.isnan(filled[:, 0])
        means = a @ np.where(bad_row[:, None], 0.0, filled) @ b.T  # (nr, nc)
        means[(a_touched & bad_row).any(axis=1)] = np.nan
        return means.reshape(-1)

    out = {}
    for name, tie in ties.items():
        if name.endswith("azimuth"):
            rad = np.deg2rad(tie)
            out[name] = np.rad2deg(np.arctan2(tile_means(np.sin(rad)), tile_means(np.cos(rad)))) % 360.0
        else:
            out[name] = tile_means(tie)
    return out
