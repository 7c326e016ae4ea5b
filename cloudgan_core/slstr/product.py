"""Open a Sentinel-3 SLSTR Level-1 RBT product given as a ``.SEN3`` folder or a ``.zip``.

A zip is read member by member (never unpacked whole to disk). Every file read can be checked
against the size and MD5 in the product's manifest.

A product is untrusted input, and reading it is bounded:

- the manifest is at most :data:`~cloudgan_core.slstr.manifest.MAX_MANIFEST_BYTES`;
- a zip holds at most :data:`MAX_ZIP_MEMBERS` entries in a central directory of at most
  :data:`MAX_ZIP_DIRECTORY_BYTES`, checked before :mod:`zipfile` reads that directory;
- a file is read only when the manifest lists it with a size of at most :data:`MAX_MEMBER_BYTES`
  and the zip header (or the file on disk) has that same size, checked before the first byte is
  decompressed; it is then streamed in :data:`CHUNK_BYTES` pieces and refused the moment it
  yields more bytes than declared (a lying zip header);
- in a ``.SEN3`` folder, a file that is a symbolic link (or not a regular file) is refused, so
  nothing outside the folder is ever read;
- an encrypted zip entry, or one compressed with anything but stored/deflate, is refused with a
  clear error instead of :mod:`zipfile`'s ``RuntimeError``/``NotImplementedError``.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

import h5py

from cloudgan_core.digests import new_digest
from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestFile,
    parse_manifest,
    short_repr,
)
from cloudgan_core.slstr.names import (
    ProductNameError,
    product_id,  # noqa: F401  (re-exported: the partition key of a name)
    validate_product_id,
)
from cloudgan_core.slstr.netcdf import NetCDF
from cloudgan_core.storage import UnsafePathError, inside

if TYPE_CHECKING:
    import xarray as xr

PRODUCT_TYPE = "SL_1_RBT___"
#: Nadir-view bands read as radiance on the 500 m ``an`` grid (TOA reflectance), and as brightness
#: temperature on the 1 km ``in`` grid; together the order of :data:`cloudgan_core.clouds.BANDS`
#: (spelt out here: :mod:`cloudgan_core.clouds` imports this package).
RADIANCE_BANDS: tuple[str, ...] = ("S1", "S2", "S3", "S4", "S5", "S6")
THERMAL_BANDS: tuple[str, ...] = ("S7", "S8", "S9")

#: Files needed for the cloud mask (flags and the tie-point solar geometry).
MASK_FILES: tuple[str, ...] = ("flags_an.nc", "geometry_tn.nc")
#: Files the pipeline reads, the manifest first. Everything else in a product is ignored.
PIPELINE_FILES: tuple[str, ...] = (
    MANIFEST_NAME,
    *MASK_FILES,
    *(f"{b}_radiance_an.nc" for b in RADIANCE_BANDS),
    *(f"{b}_quality_an.nc" for b in RADIANCE_BANDS),
    *(f"{b}_BT_in.nc" for b in THERMAL_BANDS),
)
#: Files used when present (detector index per pixel for the solar irradiance).
OPTIONAL_FILES: tuple[str, ...] = ("indices_an.nc",)

#: Most entries a product zip may hold (a full SL_1_RBT product has about 120).
MAX_ZIP_MEMBERS = 10_000
#: Largest central directory (the zip's table of contents) read, in bytes; a full SL_1_RBT
#: product's is about 25 kB.
MAX_ZIP_DIRECTORY_BYTES = 4 * 1024 * 1024
#: Largest product file read, in bytes (real SL_1_RBT netCDF files are at most tens of MB). A file
#: opened from a zip is held in memory while xarray reads it.
MAX_MEMBER_BYTES = 512 * 1024 * 1024
#: Bytes read at a time when a file is streamed (copied or checksummed).
CHUNK_BYTES = 1024 * 1024

#: Compression methods read. Python's bzip2 and lzma readers decompress without an output bound,
#: so they are refused like the methods zipfile cannot read at all (e.g. deflate64).
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
#: General-purpose flag bits of an encrypted entry (traditional and strong encryption).
_ZIP_ENCRYPTED = 0x1 | 0x40
#: What reading a broken zip entry raises (zipfile, zlib and the OS).
_READ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error)


def _check_member_name(zpath: Path, name: str) -> None:
    p = PurePosixPath(name)
    if name.startswith(("/", "\\")) or p.is_absolute() or ".." in p.parts or ":" in (p.parts[0] if p.parts else ""):
        raise ProductError(zpath, f"zip entry {short_repr(name)} escapes the product folder; refusing to read it")


def _check_zip_info(where: str, info: zipfile.ZipInfo) -> None:
    """Refuse a zip entry that is a symbolic link, encrypted, or compressed with an unread method."""
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ProductError(where, "is a symbolic link in the zip; refusing it")
    if info.flag_bits & _ZIP_ENCRYPTED:
        raise ProductError(where, "is encrypted; the product cannot be read (download it again unencrypted)")
    if info.compress_type not in _ZIP_METHODS:
        method = zipfile.compressor_names.get(info.compress_type, "unknown")
        raise ProductError(where, f"uses compression method {info.compress_type} ({method}), which is not read: only "
                                  f"stored and deflate zip entries are (re-zip the product with deflate)")


def _check_zip_directory(path: Path) -> None:
    """Refuse a zip with too many entries or too big a central directory, from its end record,
    before :class:`zipfile.ZipFile` reads the whole directory into memory."""
    try:
        with open(path, "rb") as fh:
            # zipfile's own (private, long-stable) reader of the end-of-central-directory record
            end = zipfile._EndRecData(fh)  # noqa: SLF001
    except (*_READ_ERRORS, struct.error) as exc:
        raise ProductError(path, f"not a zip file ({exc})") from None
    if end is None:
        raise ProductError(path, "not a zip file (no end-of-central-directory record)")
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # noqa: SLF001
    if entries > MAX_ZIP_MEMBERS:
        raise ProductError(path, f"zip holds {entries} entries; more than the limit of {MAX_ZIP_MEMBERS}")
    if size > MAX_ZIP_DIRECTORY_BYTES:
        raise ProductError(path, f"the zip's central directory is {size} bytes; more than the limit of "
                                 f"{MAX_ZIP_DIRECTORY_BYTES}")


def _folder_file(folder: Path, name: str) -> Path:
    """``folder/name`` after checking that it is a regular file inside ``folder``, not a symbolic link."""
    path = folder / name
    if path.is_symlink():
        raise ProductError(path, "is a symbolic link; refusing to follow it (a product's files must be inside "
                                 "its folder)")
    try:
        inside(folder, *PurePosixPath(name).parts)
    except UnsafePathError as exc:
        raise ProductError(path, f"is not a file inside the product folder ({exc})") from None
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise ProductError(folder, f"missing required file {name}") from None
    if not stat.S_ISREG(mode):
        raise ProductError(path, "is not a regular file; refusing to read it")
    return path


def _open_nofollow(path: Path) -> BinaryIO:
    """Open a file checked by :func:`_folder_file` for reading, refusing a symbolic link
    swapped in since the check."""
    try:
        return open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW))
    except OSError as exc:
        raise ProductError(path, f"cannot open ({exc.strerror or exc})") from None


class Product:
    """An open SL_1_RBT product.

    Use :func:`open_product` to create one. Works as a context manager (closes the zip).

    Attributes
    ----------
    path
        The ``.SEN3`` folder or ``.zip`` it was opened from.
    manifest
        The parsed ``xfdumanifest.xml``.
    manifest_bytes
        The manifest exactly as read and parsed (at most ``MAX_MANIFEST_BYTES``).
    """

    def __init__(self, path: Path, manifest: Manifest, manifest_bytes: bytes, *, folder: Path | None = None,
                 zip_file: zipfile.ZipFile | None = None, zip_prefix: str = "") -> None:
        self.path = path
        self.manifest = manifest
        self.manifest_bytes = manifest_bytes
        self._folder = folder
        self._zip = zip_file
        self._prefix = zip_prefix

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Product name with ``.SEN3``."""
        return self.manifest.product_name

    @property
    def id(self) -> str:
        """Product name without ``.SEN3`` (the partition key)."""
        return self.manifest.product_id

    def describe(self, name: str) -> str:
        """A path-like label for ``name`` inside this product, for messages."""
        return f"{self.path}/{name}" if self._folder else f"{self.path}!{self._prefix}{name}"

    # -- files ----------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether something named ``name`` is in the product (reading it may still be refused)."""
        if self._folder is not None:
            return os.path.lexists(self._folder / name)
        assert self._zip is not None
        try:
            self._zip.getinfo(self._prefix + name)
            return True
        except KeyError:
            return False

    def file_key(self, name: str) -> tuple[object, ...]:
        """What identifies the file ``name`` as stored now: its path (the zip's for a member),
        device, inode, size and modification time. Any edit or replacement changes it."""
        if not self.has(name):
            raise ProductError(self.path, f"missing required file {name}")
        path = self._folder / name if self._folder is not None else self.path
        st = os.stat(path)
        return str(path), name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    def require(self, names: Iterable[str]) -> None:
        """Raise a :class:`ProductError` naming the first file of ``names`` that is missing."""
        for name in names:
            if not self.has(name):
                raise ProductError(self.path, f"missing required file {name}")

    def _entry(self, name: str) -> ManifestFile:
        """The manifest's entry for ``name``, whose size bounds every read of it."""
        entry = self.manifest.files.get(name)
        if entry is None:
            if not self.has(name):
                raise ProductError(self.path, f"missing required file {name}")
            raise ProductError(self.describe(name), "file is not listed in the manifest; cannot verify it")
        if entry.size < 0:
            raise ProductError(self.describe(name), "the manifest gives no size for this file; cannot bound the read")
        if entry.size > MAX_MEMBER_BYTES:
            raise ProductError(self.describe(name), f"the manifest says {entry.size} bytes; more than the limit of "
                                                    f"{MAX_MEMBER_BYTES} for one file")
        return entry

    @contextmanager
    def _open(self, name: str) -> Iterator[tuple[BinaryIO, int]]:
        """``(file, size)`` of ``name``: after the checks, before reading any byte."""
        if self._folder is not None:
            with _open_nofollow(_folder_file(self._folder, name)) as fh:
                yield fh, os.fstat(fh.fileno()).st_size
            return
        assert self._zip is not None
        try:
            info = self._zip.getinfo(self._prefix + name)
        except KeyError:
            raise ProductError(self.path, f"missing required file {name}") from None
        _check_zip_info(self.describe(name), info)
        try:
            member = self._zip.open(info)
        except _READ_ERRORS as exc:
            raise ProductError(self.describe(name), f"cannot read zip member ({exc})") from None
        with member:
            yield member, info.file_size

    def iter_chunks(self, name: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes of the file ``name``, at most ``chunk_bytes`` at a time.

        Before the first byte is read, the file's size (zip header or file system) must equal the
        manifest's, which must be at most :data:`MAX_MEMBER_BYTES`; reading stops with an error
        the moment the file yields more bytes than that. The manifest itself comes as the bytes it
        was parsed from.

        Raises
        ------
        ProductError
            The file is missing, not in the manifest, too big, of another size than the manifest
            says, unreadable (encrypted, unsupported compression, corrupt), a symbolic link, or
            truncated.
        """
        if name == MANIFEST_NAME:
            yield self.manifest_bytes
            return
        entry = self._entry(name)
        with self._open(name) as (fh, size):
            if size != entry.size:
                raise ProductError(self.describe(name), f"size mismatch: the manifest says {entry.size} bytes, the "
                                                        f"file has {size} (corrupt or incomplete product)")
            left = entry.size
            while True:
                try:
                    chunk = fh.read(min(chunk_bytes, left + 1))
                except _READ_ERRORS as exc:
                    raise ProductError(self.describe(name), f"cannot read ({exc})") from None
                if not chunk:
                    break
                left -= len(chunk)
                if left < 0:
                    raise ProductError(self.describe(name), f"yields more than the {entry.size} bytes it declares; "
                                                            f"refusing to read on (corrupt or hostile product)")
                yield chunk
            if left:
                raise ProductError(self.describe(name), f"ends after {entry.size - left} of its {entry.size} bytes "
                                                        f"(truncated)")

    def _stream(self, name: str, sink: Callable[[bytes], object] | None = None) -> str:
        """Feed ``name`` to ``sink`` chunk by chunk; its MD5, checked against the manifest's."""
        md5 = new_digest("md5")
        with closing(self.iter_chunks(name)) as chunks:
            for chunk in chunks:
                md5.update(chunk)
                if sink is not None:
                    sink(chunk)
        digest = md5.hexdigest()
        if name != MANIFEST_NAME:
            expected = self.manifest.files[name].md5
            if digest != expected:
                raise ProductError(self.describe(name), f"MD5 mismatch: manifest says {expected}, file has {digest} "
                                                        f"(corrupt or incomplete product)")
        return digest

    def copy_to(self, name: str, dest: str | Path) -> str:
        """Copy the file ``name`` to the new file ``dest`` in chunks, checking its size and MD5.

        Returns the MD5 (lower-case hex). ``dest`` must not exist. On a bad file a
        :class:`ProductError` is raised and ``dest`` is left partly written (write it inside an
        :func:`~cloudgan_core.atomic.atomic_dir`). Errors writing ``dest`` (a full disk) are not
        caught here.
        """
        with open(dest, "xb") as out:
            return self._stream(name, out.write)

    def read_bytes(self, name: str) -> bytes:
        """The bytes of the file ``name`` (size-checked like :meth:`iter_chunks`; not MD5-checked)."""
        return b"".join(self.iter_chunks(name))

    def verify(self, names: Iterable[str]) -> dict[str, str]:
        """Check the size and MD5 of each file against the manifest, streaming each file.

        Returns the verified digests by file name (the manifest, which has no MD5 of its own, is
        skipped).

        Raises
        ------
        ProductError
            A file is missing, not listed in the manifest, or its size or MD5 differs.
        """
        return {name: self._stream(name) for name in names if name != MANIFEST_NAME}

    def _netcdf_source(self, name: str) -> Path | io.BytesIO:
        """What a netCDF reader opens for ``name``: the checked file of a folder, or the bytes of a
        zip member read after its size was checked against the manifest (:meth:`iter_chunks`)."""
        if not self.has(name):
            raise ProductError(self.path, f"missing required file {name}")
        if self._folder is not None:
            return _folder_file(self._folder, name)
        return io.BytesIO(self.read_bytes(name))

    def open_dataset(self, name: str, variables: Sequence[str] = ()) -> xr.Dataset:
        """Open the netCDF file ``name`` with xarray (h5netcdf), CF-decoded.

        From a zip the file is read into memory, only after its size was checked against the
        manifest (see :meth:`iter_chunks`); in a folder it must be a regular file, not a link.
        The pipeline's stages use :meth:`open_netcdf` instead (no xarray, faster).

        Parameters
        ----------
        name
            File name inside the product, e.g. ``"flags_an.nc"``.
        variables
            Variables that must be present; a missing one is an error naming both.
        """
        import xarray as xr  # only here: the pipeline itself never needs xarray

        source = self._netcdf_source(name)
        try:
            ds = xr.open_dataset(source, engine="h5netcdf", cache=False)
        except Exception as exc:  # h5py/h5netcdf raise many types for a corrupt file
            raise ProductError(self.describe(name), f"not a readable netCDF file ({type(exc).__name__}: {exc})") from None
        for var in variables:
            if var not in ds.variables:
                ds.close()
                raise ProductError(self.describe(name), f"variable {var!r} missing from {name}")
        # Read the required variables now (in place, so later ``.values`` costs nothing): a file
        # whose header is fine but whose data chunks are corrupt otherwise fails later with a bare
        # h5py OSError that names no file.
        for var in variables:
            try:
                ds.variables[var].load()
            except Exception as exc:
                ds.close()
                raise ProductError(self.describe(name), f"cannot read variable {var!r} from {name}; corrupt data "
                                                        f"({type(exc).__name__}: {exc})") from None
        return ds

    @contextmanager
    def open_netcdf(self, name: str, variables: Sequence[str] = ()) -> Iterator[NetCDF]:
        """Open the netCDF file ``name`` for the pipeline's reader (:class:`~cloudgan_core.slstr.netcdf.NetCDF`).

        Same checks as :meth:`open_dataset` (a regular file in a folder; a zip member read only
        after its size check); ``variables`` must be present. Nothing is read until asked for.
        """
        source = self._netcdf_source(name)
        label = self.describe(name)
        try:
            file = h5py.File(source, "r")
        except Exception as exc:  # h5py raises many types for a file that is not HDF5
            raise ProductError(label, f"not a readable netCDF file ({type(exc).__name__}: {exc})") from None
        nc = NetCDF(file, name, label)
        try:
            for var in variables:
                if not nc.has(var):
                    raise ProductError(label, f"variable {var!r} missing from {name}")
            yield nc
        finally:
            nc.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Product:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Product({self.id!r}, path={str(self.path)!r})"


def _check_manifest(path: Path, source: str, manifest: Manifest) -> None:
    """The product is SL_1_RBT and its name (which becomes a folder name) is a valid one."""
    if manifest.product_type != PRODUCT_TYPE:
        raise ProductError(path, f"product type is {short_repr(manifest.product_type)}; only {PRODUCT_TYPE} "
                                 f"(SLSTR Level-1 RBT) is supported")
    try:
        validate_product_id(manifest.product_name, "manifest productName")
    except ProductNameError as exc:
        raise ProductError(source, str(exc)) from None


def _read_manifest(fh: BinaryIO, size: int, source: str) -> bytes:
    if size > MAX_MANIFEST_BYTES:
        raise ProductError(source, f"manifest is {size} bytes; more than the limit of {MAX_MANIFEST_BYTES} "
                                   f"({MAX_MANIFEST_BYTES // 2**20} MiB)")
    try:
        return fh.read(MAX_MANIFEST_BYTES + 1)  # parse_manifest refuses more than the limit
    except _READ_ERRORS as exc:
        raise ProductError(source, f"cannot read the manifest ({exc})") from None


def open_product(path: str | Path) -> Product:
    """Open a product from a ``.SEN3`` folder or a ``.zip`` that holds ``<name>.SEN3/``.

    Raises
    ------
    ProductError
        Not a zip or folder, a zip with entries escaping the folder or beyond the limits, no
        manifest, a manifest that is a link, too big or invalid, a product type other than
        SL_1_RBT, or a product name that is not an SL_1_RBT name.
    """
    path = Path(path)
    if path.is_dir():
        manifest_path = _folder_file(path, MANIFEST_NAME)
        with _open_nofollow(manifest_path) as fh:
            raw = _read_manifest(fh, os.fstat(fh.fileno()).st_size, str(manifest_path))
        manifest = parse_manifest(raw, str(manifest_path))
        _check_manifest(path, str(manifest_path), manifest)
        return Product(path, manifest, raw, folder=path)
    if not path.exists():
        raise ProductError(path, "no such file or folder")
    _check_zip_directory(path)
    try:
        zf = zipfile.ZipFile(path)
    except (*_READ_ERRORS, struct.error, ValueError) as exc:
        raise ProductError(path, f"not a zip file ({exc})") from None
    try:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ProductError(path, f"zip holds {len(infos)} entries; more than the limit of {MAX_ZIP_MEMBERS}")
        for info in infos:
            _check_member_name(path, info.filename)
        manifests = [i for i in infos if i.filename.endswith(".SEN3/" + MANIFEST_NAME) and i.filename.count("/") == 1]
        if not manifests:
            raise ProductError(path, f"zip holds no <name>.SEN3/{MANIFEST_NAME}; is this a Sentinel-3 product?")
        info = manifests[0]
        source = f"{path}!{info.filename}"
        _check_zip_info(source, info)
        try:
            member = zf.open(info)
        except _READ_ERRORS as exc:
            raise ProductError(source, f"cannot read the manifest ({exc})") from None
        with member:
            raw = _read_manifest(member, info.file_size, source)
        manifest = parse_manifest(raw, source)
        _check_manifest(path, source, manifest)
    except BaseException:
        zf.close()
        raise
    return Product(path, manifest, raw, zip_file=zf, zip_prefix=info.filename[: -len(MANIFEST_NAME)])
