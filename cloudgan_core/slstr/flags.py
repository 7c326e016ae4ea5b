"""Cloud masks and per-pixel flags from ``flags_an.nc``.

Bits are looked up by name in each variable's ``flag_meanings`` / ``flag_masks`` attributes at run
time: the layout has changed between processing baselines, so no bit value is hard-coded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from cloudgan_core.errors import ProductError
from cloudgan_core.settings import check_between, check_choice
from cloudgan_core.slstr.geometry import solar_zenith
from cloudgan_core.slstr.product import Product

FLAGS_FILE = "flags_an.nc"

#: Bit positions of :attr:`SceneMasks.flags` (a uint16 per pixel). ``sza_ok`` means the solar
#: zenith angle is at most the configured limit; ``valid`` means usable for visible imagery.
PIXEL_FLAGS: tuple[str, ...] = (
    "cloud", "unfilled", "day", "twilight", "land", "ocean", "snow", "sun_glint", "sza_ok", "valid",
)
PIXEL_FLAG_BITS: dict[str, int] = {name: 1 << i for i, name in enumerate(PIXEL_FLAGS)}

CLOUD_SOURCES = ("summary_cloud", "bayes")


def check_max_solar_zenith(value: float) -> float:
    """The solar-zenith limit of valid pixels, degrees, within (0, 90] (the sun above the horizon)."""
    return check_between("max_solar_zenith", value, 0.0, 90.0, open_low=True, unit="degrees")


def _image_shape(shape: tuple[int, ...], product: Product) -> tuple[int, int]:
    """``(rows, columns)`` of ``confidence_an``, which must be 2-D and not empty."""
    label = product.describe(FLAGS_FILE)
    if len(shape) != 2:
        raise ProductError(label, f"confidence_an is {len(shape)}-D {shape}; expected (rows, columns)")
    if shape[0] == 0 or shape[1] == 0:
        raise ProductError(label, f"{FLAGS_FILE} has {shape[0]} rows and {shape[1]} columns; no image to process")
    return int(shape[0]), int(shape[1])


def scene_shape(product: Product) -> tuple[int, int]:
    """``(rows, columns)`` of the 500 m ``an`` image grid (``confidence_an`` in ``flags_an.nc``).

    Reads the variable's shape only, not its data.

    Raises
    ------
    ProductError
        The variable is not 2-D or has no row or no column.
    """
    with product.open_dataset(FLAGS_FILE, ["confidence_an"]) as ds:
        shape = tuple(ds["confidence_an"].shape)
    return _image_shape(shape, product)


def flag_bits(attrs: Mapping[str, object], source: str = "") -> dict[str, int]:
    """Map flag names to bit values from CF ``flag_masks`` and ``flag_meanings`` attributes.

    ``spare`` entries are skipped. ``flag_masks`` may be an array or a string like
    ``"[ 1 2 4 ]"``.
    """
    masks = attrs.get("flag_masks")
    meanings = attrs.get("flag_meanings")
    if masks is None or meanings is None:
        raise ProductError(source, "variable has no flag_masks/flag_meanings attributes")
    if isinstance(masks, str):
        values = [int(v) for v in masks.strip("[] \n").split()]
    else:
        values = [int(v) for v in np.atleast_1d(np.asarray(masks))]
    names = str(meanings).split()
    if len(names) != len(values):
        raise ProductError(source, f"flag_meanings has {len(names)} names but flag_masks has {len(values)} values")
    return {n: v for n, v in zip(names, values) if n != "spare"}


def _bit(bits: dict[str, int], name: str, source: str) -> int:
    try:
        return bits[name]
    except KeyError:
        raise ProductError(source, f"flag {name!r} not found in flag_meanings ({' '.join(bits)})") from None


@dataclass
class SceneMasks:
    """Cloud mask and per-pixel flags of one scene on the 500 m ``an`` grid.

    Attributes
    ----------
    flags
        uint16 (rows, columns); bit ``1 << PIXEL_FLAGS.index(name)`` per flag.
    source
        Which cloud mask was used: ``"summary_cloud"`` or ``"bayes"``.
    notes
        Remarks a user should see (e.g. "bayes_an not computed; used summary_cloud").
    """

    flags: np.ndarray
    source: str
    notes: list[str] = field(default_factory=list)

    def flag(self, name: str) -> np.ndarray:
        """Boolean array of one flag from :data:`PIXEL_FLAGS`."""
        return (self.flags & PIXEL_FLAG_BITS[name]) != 0

    @property
    def cloud(self) -> np.ndarray:
        return self.flag("cloud")

    @property
    def valid(self) -> np.ndarray:
        return self.flag("valid")

    @property
    def shape(self) -> tuple[int, int]:
        return self.flags.shape  # type: ignore[return-value]

    def fractions(self) -> dict[str, float]:
        """Share of all pixels carrying each flag, plus cloud over valid pixels."""
        n = self.flags.size
        out = {f"{name}_fraction": float(np.count_nonzero(self.flag(name))) / n for name in PIXEL_FLAGS}
        valid = self.valid
        nv = int(np.count_nonzero(valid))
        out["cloud_fraction_of_valid"] = float(np.count_nonzero(self.cloud & valid)) / nv if nv else 0.0
        out["cloud_fraction"] = out.pop("cloud_fraction")
        return out


def scene_masks(product: Product, *, source: str = "summary_cloud", bayes_flag: str = "single_moderate",
                max_solar_zenith: float = 85.0) -> SceneMasks:
    """Read the cloud mask and the per-pixel flags of a product.

    Parameters
    ----------
    product
        An open product.
    source
        ``"summary_cloud"`` (``confidence_an & summary_cloud``) or ``"bayes"`` (``bayes_an &
        bayes_flag``). When ``bayes_an`` is 255 everywhere (not computed, as in early
        baselines) the summary cloud bit is used and a note says so.
    bayes_flag
        Which ``bayes_an`` flag counts as cloud.
    max_solar_zenith
        Pixels with a larger solar zenith angle (degrees, within (0, 90]) are invalid for visible
        imagery.

    Raises
    ------
    SettingError
        ``source`` or ``max_solar_zenith`` is not allowed.
    ProductError
        ``flags_an.nc`` is unusable: no image (0 rows), flags not found by name, no geometry.
    """
    check_choice("source", source, CLOUD_SOURCES)
    check_max_solar_zenith(max_solar_zenith)
    label = product.describe(FLAGS_FILE)
    with product.open_dataset(FLAGS_FILE, ["confidence_an"]) as ds:
        conf_var = ds["confidence_an"]
        _image_shape(tuple(conf_var.shape), product)
        bits = flag_bits(conf_var.attrs, label)
        conf = np.asarray(conf_var.values)
        notes: list[str] = []
        cloud_bits: np.ndarray | None = None
        used = "summary_cloud"
        if source == "bayes":
            if "bayes_an" not in ds.variables:
                notes.append("bayes_an is not in flags_an.nc; used confidence_an summary_cloud instead")
            else:
                bayes = np.asarray(ds["bayes_an"].values)
                if bayes.shape != conf.shape:
                    raise ProductError(label, f"bayes_an is {bayes.shape} but confidence_an is {conf.shape}")
                if np.all(bayes == 255):
                    notes.append("bayes_an is 255 everywhere (not computed in this product); used confidence_an summary_cloud instead")
                else:
                    bbits = flag_bits(ds["bayes_an"].attrs, label)
                    cloud_bits = (bayes != 255) & ((bayes & _bit(bbits, bayes_flag, label)) != 0)
                    used = "bayes"
    if conf.dtype.kind == "f":  # decoded with a _FillValue: treat fill as unfilled
        fill = np.isnan(conf)
        conf = np.where(fill, _bit(bits, "unfilled", label), conf).astype(np.uint32)
    if cloud_bits is None:
        cloud_bits = (conf & _bit(bits, "summary_cloud", label)) != 0

    sza = solar_zenith(product, conf.shape)
    sza_ok = sza <= max_solar_zenith
    unfilled = (conf & _bit(bits, "unfilled", label)) != 0
    day = (conf & _bit(bits, "day", label)) != 0
    planes = {
        "cloud": cloud_bits & ~unfilled,
        "unfilled": unfilled,
        "day": day,
        "twilight": (conf & _bit(bits, "twilight", label)) != 0,
        "land": (conf & _bit(bits, "land", label)) != 0,
        "ocean": (conf & _bit(bits, "ocean", label)) != 0,
        "snow": (conf & _bit(bits, "snow", label)) != 0,
        "sun_glint": (conf & _bit(bits, "sun_glint", label)) != 0,
        "sza_ok": sza_ok,
        "valid": ~unfilled & day & sza_ok,
    }
    flags = np.zeros(conf.shape, dtype=np.uint16)
    for name, plane in planes.items():
        flags |= plane.astype(np.uint16) * np.uint16(PIXEL_FLAG_BITS[name])
    return SceneMasks(flags=flags, source=used, notes=notes)
