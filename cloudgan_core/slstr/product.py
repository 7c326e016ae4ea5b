"""Open a Sentinel-3 SLSTR Level-1 RBT product given as a ``.SEN3`` folder or a ``.zip``.

A zip is read member by member (never unpacked whole to disk). Every file read can be checked
against the MD5 in the product's manifest.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import xarray as xr

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.manifest import MANIFEST_NAME, Manifest, md5_hex, parse_manifest
from cloudgan_core.slstr.names import product_id  # noqa: F401  (re-exported: the partition key of a name)

PRODUCT_TYPE = "SL_1_RBT___"
FALSE_COLOR_BANDS = ("S1", "S3", "S5")

#: Files needed for the cloud mask (flags and the tie-point solar geometry).
MASK_FILES: tuple[str, ...] = ("flags_an.nc", "geometry_tn.nc")
#: Files the pipeline reads, the manifest first. Everything else in a product is ignored.
PIPELINE_FILES: tuple[str, ...] = (
    MANIFEST_NAME,
    *MASK_FILES,
    *(f"{b}_radiance_an.nc" for b in FALSE_COLOR_BANDS),
    *(f"{b}_quality_an.nc" for b in FALSE_COLOR_BANDS),
)
#: Files used when present (detector index per pixel for the solar irradiance).
OPTIONAL_FILES: tuple[str, ...] = ("indices_an.nc",)


def _check_member_name(zpath: Path, name: str) -> None:
    p = PurePosixPath(name)
    if name.startswith(("/", "\\")) or p.is_absolute() or ".." in p.parts or ":" in (p.parts[0] if p.parts else ""):
        raise ProductError(zpath, f"zip entry {name!r} escapes the product folder; refusing to read it")


class Product:
    """An open SL_1_RBT product.

    Use :func:`open_product` to create one. Works as a context manager (closes the zip).

    Attributes
    ----------
    path
        The ``.SEN3`` folder or ``.zip`` it was opened from.
    manifest
        The parsed ``xfdumanifest.xml``.
    """

    def __init__(self, path: Path, manifest: Manifest, *, folder: Path | None = None,
                 zip_file: zipfile.ZipFile | None = None, zip_prefix: str = "") -> None:
        self.path = path
        self.manifest = manifest
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
        """Whether the file ``name`` is present in the product."""
        if self._folder is not None:
            return (self._folder / name).is_file()
        assert self._zip is not None
        try:
            self._zip.getinfo(self._prefix + name)
            return True
        except KeyError:
            return False

    def require(self, names: Iterable[str]) -> None:
        """Raise a :class:`ProductError` naming the first file of ``names`` that is missing."""
        for name in names:
            if not self.has(name):
                raise ProductError(self.path, f"missing required file {name}")

    def read_bytes(self, name: str) -> bytes:
        """The bytes of the file ``name``."""
        if not self.has(name):
            raise ProductError(self.path, f"missing required file {name}")
        if self._folder is not None:
            return (self._folder / name).read_bytes()
        assert self._zip is not None
        try:
            return self._zip.read(self._prefix + name)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ProductError(self.describe(name), f"cannot read zip member ({exc})") from None

    def verify(self, names: Iterable[str]) -> dict[str, str]:
        """Check the MD5 of each file against the manifest.

        Returns the verified digests by file name.

        Raises
        ------
        ProductError
            A file is missing, not listed in the manifest, or its MD5 differs.
        """
        digests = {}
        for name in names:
            if name == MANIFEST_NAME:
                continue
            entry = self.manifest.files.get(name)
            if entry is None:
                raise ProductError(self.describe(name), "file is not listed in the manifest; cannot verify it")
            digest = md5_hex(self.read_bytes(name))
            if digest != entry.md5:
                raise ProductError(self.describe(name),
                                   f"MD5 mismatch: manifest says {entry.md5}, file has {digest} (corrupt or incomplete download)")
            digests[name] = digest
        return digests

    def open_dataset(self, name: str, variables: Sequence[str] = ()) -> xr.Dataset:
        """Open the netCDF file ``name`` with xarray (h5netcdf), CF-decoded.

        Parameters
        ----------
        name
            File name inside the product, e.g. ``"flags_an.nc"``.
        variables
            Variables that must be present; a missing one is an error naming both.
        """
        if not self.has(name):
            raise ProductError(self.path, f"missing required file {name}")
        source = self._folder / name if self._folder is not None else io.BytesIO(self.read_bytes(name))
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

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Product:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Product({self.id!r}, path={str(self.path)!r})"


def _check_type(path: Path, manifest: Manifest) -> None:
    if manifest.product_type != PRODUCT_TYPE:
        raise ProductError(path, f"product type is {manifest.product_type!r}; only {PRODUCT_TYPE} (SLSTR Level-1 RBT) is supported")


def open_product(path: str | Path) -> Product:
    """Open a product from a ``.SEN3`` folder or a ``.zip`` that holds ``<name>.SEN3/``.

    Raises
    ------
    ProductError
        Not a zip or folder, a zip with entries escaping the folder, no manifest, or a product
        type other than SL_1_RBT.
    """
    path = Path(path)
    if path.is_dir():
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ProductError(path, f"missing required file {MANIFEST_NAME}")
        manifest = parse_manifest(manifest_path.read_bytes(), str(manifest_path))
        _check_type(path, manifest)
        return Product(path, manifest, folder=path)
    if not path.exists():
        raise ProductError(path, "no such file or folder")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ProductError(path, f"not a zip file ({exc})") from None
    try:
        names = zf.namelist()
        for name in names:
            _check_member_name(path, name)
        manifests = [n for n in names if n.endswith(".SEN3/" + MANIFEST_NAME) and n.count("/") == 1]
        if not manifests:
            raise ProductError(path, f"zip holds no <name>.SEN3/{MANIFEST_NAME}; is this a Sentinel-3 product?")
        prefix = manifests[0][: -len(MANIFEST_NAME)]
        manifest = parse_manifest(zf.read(manifests[0]), f"{path}!{manifests[0]}")
        _check_type(path, manifest)
    except BaseException:
        zf.close()
        raise
    return Product(path, manifest, zip_file=zf, zip_prefix=prefix)
