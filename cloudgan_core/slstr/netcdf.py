"""The pipeline's reader of a product's netCDF-4 files: h5py, no xarray, each variable read once.

``Product.open_dataset`` (xarray) is the convenient reader for people. The stages read through
:class:`NetCDF` (``Product.open_netcdf``) instead:

- global and variable attributes as plain Python values (byte strings decoded);
- a variable's raw values, or its CF unpacking (:class:`Packing`: ``* scale_factor + add_offset``,
  ``_FillValue``/``missing_value`` → NaN) straight into float32 (or a dtype asked for);
- deflate-compressed chunks inflated by a few threads at once (:mod:`zlib` releases the GIL,
  HDF5's own reader does not), which is most of the time a full-size product takes.

Reads are bounded: a variable larger than :data:`MAX_VARIABLE_BYTES` once decoded is refused before
a byte is inflated, and each chunk is inflated to at most its declared size. Every failure is a
:class:`~cloudgan_core.errors.ProductError` naming the file and the variable.
"""

from __future__ import annotations

import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import product as cartesian

import h5py
import numpy as np

from cloudgan_core.errors import ProductError

#: Largest variable read, in bytes once decoded (a full-size 500 m SLSTR variable is 29 MB as
#: float32; the 0.5 km grid of a whole orbit segment would be about 10 times that).
MAX_VARIABLE_BYTES = 512 * 1024 * 1024
#: HDF5 bookkeeping attributes of netCDF-4 dimensions, left out of :meth:`NetCDF.var_attrs`.
_HIDDEN_ATTRS = frozenset({"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid",
                           "_Netcdf4Coordinates", "_nc3_strict", "_NCProperties"})
#: Most threads that inflate chunks at once.
MAX_THREADS = 4


def _plain(value: object) -> object:
    """An attribute value as plain Python: byte strings decoded (UTF-8, bad bytes replaced)."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return [bytes(v).decode("utf-8", "replace") for v in value.ravel()]
    return value


def _threads() -> int:
    """Cores this process may use (its CPU affinity), capped at :data:`MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


@dataclass(frozen=True)
class Packing:
    """The CF packing of a variable: ``value = stored * scale + offset`` (each only when given);
    a stored value equal to one of ``fills`` (``_FillValue``, ``missing_value``) has no value (NaN)."""

    scale: float | None = None
    offset: float | None = None
    fills: tuple[float, ...] = ()

    def unpack(self, stored: np.ndarray, dtype: type = np.float32, *, out: np.ndarray | None = None) -> np.ndarray:
        """``stored`` unpacked in ``dtype`` (scale and offset applied in ``dtype``, one pass each),
        into ``out`` when given (same shape; a block of a larger array, for instance)."""
        if self.scale is not None:
            out = np.multiply(stored, dtype(self.scale), out=out, dtype=dtype)
        elif out is None:
            out = stored.astype(dtype)
        else:
            out[...] = stored
        if self.offset:
            out += dtype(self.offset)
        for fill in self.fills:
            if not np.isnan(fill):  # a NaN fill is NaN already
                np.copyto(out, dtype(np.nan), where=stored == fill)
        return out


class NetCDF:
    """One open netCDF-4 file of a product (see :meth:`Product.open_netcdf`).

    Parameters
    ----------
    file
        The open HDF5 file.
    name
        The file's name in the product (``"flags_an.nc"``).
    label
        How messages name the file (e.g. ``"<product>/flags_an.nc"``).
    """

    def __init__(self, file: h5py.File, name: str, label: str) -> None:
        self._file = file
        self.name = name
        self.label = label

    @property
    def attrs(self) -> dict[str, object]:
        """The global attributes."""
        return {k: _plain(v) for k, v in self._file.attrs.items() if k not in _HIDDEN_ATTRS}

    def has(self, var: str) -> bool:
        """Whether the file holds a variable named ``var``."""
        return isinstance(self._file.get(var), h5py.Dataset)

    def _dataset(self, var: str) -> h5py.Dataset:
        if not self.has(var):
            raise ProductError(self.label, f"variable {var!r} missing from {self.name}")
        return self._file[var]

    def shape(self, var: str) -> tuple[int, ...]:
        """The shape of ``var`` (no data read)."""
        return tuple(int(n) for n in self._dataset(var).shape)

    def var_attrs(self, var: str) -> dict[str, object]:
        """The attributes of ``var`` (``flag_masks``, ``scale_factor``...), without HDF5 bookkeeping."""
        return {k: _plain(v) for k, v in self._dataset(var).attrs.items() if k not in _HIDDEN_ATTRS}

    def read(self, var: str) -> np.ndarray:
        """The stored values of ``var`` (no CF decoding), in native byte order.

        Raises
        ------
        ProductError
            The variable is missing, larger than :data:`MAX_VARIABLE_BYTES`, or its data cannot
            be read (corrupt chunks).
        """
        ds = self._dataset(var)
        dtype = ds.dtype.newbyteorder("=")
        size = math.prod(ds.shape) * dtype.itemsize
        if size > MAX_VARIABLE_BYTES:
            raise ProductError(self.label, f"variable {var!r} is {ds.shape} {dtype} = {size} bytes; more than the "
                                           f"limit of {MAX_VARIABLE_BYTES}")
        try:
            out = _read_deflated(ds, dtype)
            if out is None:
                out = np.empty(ds.shape, dtype)
                if out.size:
                    ds.read_direct(out)
        except Exception as exc:  # h5py, HDF5 filters and zlib raise many types for corrupt data
            raise ProductError(self.label, f"cannot read variable {var!r} from {self.name}; "
                                           f"corrupt data ({type(exc).__name__}: {exc})") from None
        return out

    def packing(self, var: str) -> Packing:
        """How ``var``'s stored values become physical ones (its CF attributes)."""
        attrs = self._dataset(var).attrs

        def scalar(key: str) -> float | None:
            return float(np.asarray(attrs[key]).reshape(-1)[0]) if key in attrs else None

        fills = tuple(v for key in ("_FillValue", "missing_value") if key in attrs
                      for v in np.asarray(attrs[key]).reshape(-1).tolist())
        return Packing(scale=scalar("scale_factor"), offset=scalar("add_offset"), fills=fills)

    def read_unpacked(self, var: str, dtype: type = np.float32) -> np.ndarray:
        """``var`` CF-unpacked in ``dtype`` (see :class:`Packing`)."""
        return self.packing(var).unpack(self.read(var), dtype)

    def close(self) -> None:
        self._file.close()


def _read_deflated(ds: h5py.Dataset, dtype: np.dtype) -> np.ndarray | None:
    """Read a chunked, deflate-only variable by inflating its chunks in threads; None when the
    variable is stored otherwise (then HDF5 reads it)."""
    chunks = ds.chunks
    if chunks is None or ds.size == 0:
        return None
    plist = ds.id.get_create_plist()
    if [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] != [h5py.h5z.FILTER_DEFLATE]:
        return None
    grid = [range(0, n, c) for n, c in zip(ds.shape, chunks)]
    if ds.id.get_num_chunks() != math.prod(len(g) for g in grid):
        return None  # chunks never written hold the fill value: leave that to HDF5
    stored = ds.dtype
    chunk_bytes = math.prod(chunks) * stored.itemsize
    out = np.empty(ds.shape, dtype)
    raw: list[tuple[tuple[int, ...], bytes]] = []
    for origin in cartesian(*grid):
        mask, data = ds.id.read_direct_chunk(origin)
        if mask:  # a filter was skipped for this chunk (stored uncompressed): rare, let HDF5 do it
            return None
        raw.append((origin, data))

    def inflate(item: tuple[tuple[int, ...], bytes]) -> None:
        origin, data = item
        inflater = zlib.decompressobj()
        block = inflater.decompress(data, chunk_bytes)
        if len(block) != chunk_bytes or not inflater.eof:
            raise ValueError(f"chunk at {origin} inflates to {len(block)} bytes, expected {chunk_bytes}")
        values = np.frombuffer(block, stored).reshape(chunks)
        where = tuple(slice(o, min(o + c, n)) for o, c, n in zip(origin, chunks, ds.shape))
        out[where] = values[tuple(slice(0, s.stop - s.start) for s in where)]

    with ThreadPoolExecutor(min(_threads(), len(raw))) as pool:
        for _ in pool.map(inflate, raw):
            pass
    return out
