"""Which composites go into the training set (cover selection, product splits) and its netCDF files.

The training-set stage (:mod:`cloudgan_core.stages.training_set`) gathers the candidate pairs of
every composites partition, keeps those :func:`select_pairs` chooses and puts each product into one
split with :func:`split_by_product`; it writes the set (its layout is that stage's), the bands of
each split through :class:`SplitNetCDF`.

Cover is in percent (0..100) and a range is a :class:`cloudgan_core.cover.CoverRange`, as
everywhere in the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cloudgan_core.clouds import BANDS, REFLECTIVE, WAVELENGTH_UM
from cloudgan_core.cover import CoverRange
from cloudgan_core.settings import MAX_COVER_BINS, SettingError, check_count, check_split_fractions

SPLITS: tuple[str, ...] = ("train", "val", "test")


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

    Raises
    ------
    SettingError
        The fractions are not three shares in [0, 1] summing to 1 with train > 0.
    """
    if len(fractions) != 3:
        raise SettingError(f"split fractions must be (train, val, test), got {fractions}")
    _, f_val, f_test = check_split_fractions(*fractions)
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


def _bin_edges(bins: int | Sequence[float], cover_range: CoverRange) -> np.ndarray:
    """Edges (percent) of ``bins`` equal-width bins over ``cover_range``, or the explicit ``bins``."""
    if isinstance(bins, (int, np.integer)):
        count = check_count("cover_bins", bins, 1, MAX_COVER_BINS)
        return np.linspace(cover_range.min, cover_range.max, count + 1)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or not 2 <= edges.size <= MAX_COVER_BINS + 1 or not np.all(np.diff(edges) > 0):
        raise SettingError(f"cover bin edges must be 2 to {MAX_COVER_BINS + 1} increasing values (percent), "
                           f"got {bins}")
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
    cover: Sequence[float] | np.ndarray,
    bins: int | Sequence[float] = 10,
    *,
    max_pairs: int | None = None,
    cover_range: CoverRange = CoverRange(0.0, 100.0),
    balanced: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Choose which candidate pairs go into the training set.

    1. Keep candidates whose cover lies in ``cover_range`` (:meth:`CoverRange.contains`:
       ``(min, max]``, from 0 also 0; NaN never).
    2. Not ``balanced``: keep all of them, or a seeded random ``max_pairs`` of them.
       ``balanced``: put them into cover bins and take the same number from every non-empty bin
       (a seeded random choice within each bin). With ``max_pairs`` the total is shared as evenly
       as the bins allow (a bin with too few gives all it has, the others make up the rest);
       without it every non-empty bin gives as many as the smallest non-empty bin has.

    Parameters
    ----------
    cover
        Cloud cover (percent, 0..100) of every candidate.
    bins
        Number of equal-width cover bins over ``cover_range`` (1 to
        :data:`~cloudgan_core.settings.MAX_COVER_BINS`), or explicit increasing edges in percent
        (bins ``[e_i, e_i+1)``, the last one closed; covers outside the edges are dropped when
        balanced).
    max_pairs
        Upper limit on the number chosen (>= 0); ``None``: no limit.
    cover_range
        The covers kept.
    balanced
        Sample evenly across cover bins.
    seed
        Seed of the random choices.

    Returns
    -------
    numpy.ndarray
        ``int64`` indices into ``cover``, ascending.

    Raises
    ------
    SettingError
        ``bins`` or ``max_pairs`` out of range.
    """
    p = np.round(np.asarray(cover, dtype=np.float64).ravel(), 6)  # as CoverRange compares
    if max_pairs is not None:
        check_count("max_pairs", max_pairs, 0)
    edges = _bin_edges(bins, cover_range)
    keep = np.flatnonzero(cover_range.contains(p))
    rng = np.random.default_rng(seed)
    if not balanced:
        if max_pairs is None or max_pairs >= keep.size:
            return keep.astype(np.int64)
        return np.sort(rng.choice(keep, size=max_pairs, replace=False)).astype(np.int64)
    pk = p[keep]
    which = np.searchsorted(edges, pk, side="right") - 1
    which[pk == edges[-1]] = edges.size - 2
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


# --------------------------------------------------------------------------- netCDF per split

#: Units of each band of :data:`cloudgan_core.clouds.BANDS`: S1-S6 TOA reflectance (1), S7-S9 K.
BAND_UNITS: tuple[str, ...] = tuple("1" if b in REFLECTIVE else "K" for b in BANDS)
#: gzip level of the netCDF variables (with the shuffle filter); chunks are one pair.
NETCDF_COMPRESSION = 4


class SplitNetCDF:
    """Writes one split of a training set as netCDF-4 (HDF5, read with ``xarray.open_dataset``), one
    pair at a time, so memory stays at one pair whatever the split's size.

    Dimensions ``pair`` (unlimited), ``band`` (9), ``y``, ``x``. Variables:

    - ``bands`` ``(pair, band, y, x)`` float32: the composite's S1-S6 TOA reflectance and S7-S9
      brightness temperature (K); NaN where there is no value;
    - ``surface`` ``(pair, band, y, x)`` float32: the clear surface behind it;
    - ``cloud_mask``, ``shadow_mask`` ``(pair, y, x)`` uint8 (1 = cloud / cloud shadow on a clear
      pixel) and ``snow_mask`` (1 = the surface pixel is flagged snow or ice);
    - coordinates ``pair`` (int32, the pair number = the PNGs' number), ``band`` (S1..S9),
      ``band_units`` and ``wavelength_um`` along ``band``, ``product`` (the product the cloud mask
      comes from) and ``surface_source`` along ``pair``.

    Global attributes: ``title``, ``split``, ``generator``, ``model_sha256``, ``blend``, ``shadows``
    (1 = on, 0 = off), ``Conventions``. The same pairs give the same bytes (no time stamps).
    """

    def __init__(self, path: Path, tile_shape: tuple[int, int], attrs: dict[str, object]) -> None:
        import h5netcdf
        import h5py

        h, w = tile_shape
        self.count = 0
        self._file = h5netcdf.File(path, "w")
        f = self._file
        text = h5py.string_dtype()
        f.dimensions = {"pair": None, "band": len(BANDS), "y": h, "x": w}
        f.attrs.update({"Conventions": "CF-1.8", "title": "CloudGAN training set: synthetic clouds over clear "
                        "SLSTR surfaces, with exact cloud and shadow masks", **attrs})
        f.create_variable("band", ("band",), data=np.array(BANDS, dtype=object), dtype=text)
        f.create_variable("band_units", ("band",), data=np.array(BAND_UNITS, dtype=object), dtype=text)
        f.create_variable("wavelength_um", ("band",), data=np.array([WAVELENGTH_UM[b] for b in BANDS], np.float32))
        self._vars = {"pair": f.create_variable("pair", ("pair",), dtype="i4"),
                      "product": f.create_variable("product", ("pair",), dtype=text),
                      "surface_source": f.create_variable("surface_source", ("pair",), dtype=text)}
        # one pair per chunk, compressed; a set without tiles (0 x 0) gets h5netcdf's own layout
        pack = {"compression": "gzip", "compression_opts": NETCDF_COMPRESSION, "shuffle": True} if h and w else {}
        described = {
            "bands": ("f4", "composite: S1-S6 TOA reflectance (1), S7-S9 brightness temperature (K)"),
            "surface": ("f4", "clear surface behind the composite: S1-S6 TOA reflectance (1), S7-S9 brightness "
                              "temperature (K)"),
            "cloud_mask": ("u1", "cloud mask: 1 = cloud, 0 = clear"),
            "shadow_mask": ("u1", "cloud shadow on clear pixels: 1 = shadow, 0 = none"),
            "snow_mask": ("u1", "surface snow or ice flag of the surface tile: 1 = snow/ice")}
        for name, (dtype, long_name) in described.items():
            dims = ("pair", "band", "y", "x") if dtype == "f4" else ("pair", "y", "x")
            if pack:
                pack["chunks"] = (1, len(BANDS), h, w) if dtype == "f4" else (1, h, w)
            fill = {"fillvalue": np.float32(np.nan)} if dtype == "f4" else {}
            var = f.create_variable(name, dims, dtype=dtype, **pack, **fill)
            var.attrs["long_name"] = long_name
            var.attrs["coordinates"] = "product surface_source" + (" band_units wavelength_um" if dtype == "f4" else "")
            if dtype == "u1":
                var.attrs["flag_values"] = np.array([0, 1], np.uint8)
            self._vars[name] = var

    def append(self, number: int, product: str, surface_source: str, bands: np.ndarray, surface: np.ndarray,
               cloud: np.ndarray, shadow: np.ndarray, snow: np.ndarray) -> None:
        """Add pair ``number`` (its arrays as documented in the class)."""
        k = self.count
        self._file.resize_dimension("pair", k + 1)
        v = self._vars
        v["pair"][k] = number
        v["product"][k] = product
        v["surface_source"][k] = surface_source
        v["bands"][k] = np.asarray(bands, np.float32)
        v["surface"][k] = np.asarray(surface, np.float32)
        v["cloud_mask"][k] = np.asarray(cloud, np.uint8)
        v["shadow_mask"][k] = np.asarray(shadow, np.uint8)
        v["snow_mask"][k] = np.asarray(snow, np.uint8)
        self.count = k + 1

    def close(self) -> None:
        self._file.close()
