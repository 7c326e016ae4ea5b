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
from cloudgan_core.slstr.blocks import row_blocks
from cloudgan_core.slstr.geometry import grid_attrs, solar_zenith
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
    with product.open_netcdf(FLAGS_FILE, ["confidence_an"]) as nc:
        return _image_shape(nc.shape("confidence_an"), product)


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
        """Share of all pixels carrying each flag (``<flag>_fraction``), plus cloud over valid
        pixels (``cloud_fraction_of_valid``). One pass: a count per flag combination."""
        counts = np.zeros(1 << len(PIXEL_FLAGS), np.int64)
        for rows in row_blocks(*self.flags.shape, 8):  # bincount copies its input as int64
            counts += np.bincount(self.flags[rows].reshape(-1), minlength=counts.size)
        combos = np.arange(counts.size)
        n = self.flags.size

        def count(bits: int) -> int:
            return int(counts[(combos & bits) == bits].sum())

        out = {f"{name}_fraction": count(bit) / n for name, bit in PIXEL_FLAG_BITS.items()}
        nv = count(PIXEL_FLAG_BITS["valid"])
        out["cloud_fraction_of_valid"] = count(PIXEL_FLAG_BITS["cloud"] | PIXEL_FLAG_BITS["valid"]) / nv if nv else 0.0
        out["cloud_fraction"] = out.pop("cloud_fraction")
        return out


#: ``confidence_an`` flags copied into :data:`PIXEL_FLAGS` under the same name.
_COPIED_FLAGS = ("unfilled", "day", "twilight", "land", "ocean", "snow", "sun_glint")


def _flag_table(bits: dict[str, int], label: str, *, summary_cloud: bool) -> np.ndarray:
    """:data:`PIXEL_FLAGS` bits (uint16) for every 16-bit ``confidence_an`` value: the copied flags,
    ``cloud`` (from ``summary_cloud`` when asked) and ``valid`` as if the solar zenith were within
    the limit (``sza_ok`` is applied per pixel afterwards)."""
    conf = np.arange(1 << 16, dtype=np.uint32)
    table = np.zeros(conf.size, np.uint16)
    on = {name: (conf & _bit(bits, name, label)) != 0 for name in _COPIED_FLAGS}
    if summary_cloud:
        on["cloud"] = ((conf & _bit(bits, "summary_cloud", label)) != 0) & ~on["unfilled"]
    on["valid"] = ~on["unfilled"] & on["day"]
    for name, plane in on.items():
        table[plane] |= np.uint16(PIXEL_FLAG_BITS[name])
    return table


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
        ``flags_an.nc`` is unusable: no image (0 rows), flags not found by name, flags that are
        not integers of at most 16 bits, no geometry.
    """
    check_choice("source", source, CLOUD_SOURCES)
    check_max_solar_zenith(max_solar_zenith)
    notes: list[str] = []
    bayes_cloud: np.ndarray | None = None
    with product.open_netcdf(FLAGS_FILE, ["confidence_an"]) as nc:
        label = nc.label
        shape = _image_shape(nc.shape("confidence_an"), product)
        bits = flag_bits(nc.var_attrs("confidence_an"), label)
        grid = grid_attrs(nc.attrs, label)
        conf = nc.read("confidence_an")
        conf_fills = nc.packing("confidence_an").fills
        if source == "bayes":
            if not nc.has("bayes_an"):
                notes.append("bayes_an is not in flags_an.nc; used confidence_an summary_cloud instead")
            else:
                if nc.shape("bayes_an") != shape:
                    raise ProductError(label, f"bayes_an is {nc.shape('bayes_an')} but confidence_an is {shape}")
                bayes = nc.read("bayes_an")
                if np.all(bayes == 255):
                    notes.append("bayes_an is 255 everywhere (not computed in this product); used confidence_an "
                                 "summary_cloud instead")
                else:
                    cloud_bit = _bit(flag_bits(nc.var_attrs("bayes_an"), label), bayes_flag, label)
                    bayes_cloud = (bayes != 255) & ((bayes & cloud_bit) != 0)
    if conf.dtype.kind not in "ui" or max(bits.values(), default=0) >= 1 << 16:
        raise ProductError(label, f"confidence_an is {conf.dtype} with flag masks up to {max(bits.values(), default=0)}; "
                                  "expected integer flags of at most 16 bits")
    for fill in conf_fills:  # a filled pixel is unfilled, whatever its bits say
        conf = np.where(conf == fill, _bit(bits, "unfilled", label), conf)
    table = _flag_table(bits, label, summary_cloud=bayes_cloud is None)
    flags = table[conf if conf.dtype == np.uint16 else conf.astype(np.uint16)]
    if bayes_cloud is not None:
        cloud = bayes_cloud & ((flags & PIXEL_FLAG_BITS["unfilled"]) == 0)
        flags |= cloud.view(np.uint8) * np.uint16(PIXEL_FLAG_BITS["cloud"])
    sza = solar_zenith(product, shape, image_grid=grid)
    # sza_ok where the sun is within the limit (NaN is not); valid only there
    ok, valid = np.uint16(PIXEL_FLAG_BITS["sza_ok"]), np.uint16(PIXEL_FLAG_BITS["valid"])
    keep = (sza <= max_solar_zenith).view(np.uint8) * np.uint16(ok | valid)
    keep |= np.uint16(0xFFFF ^ (ok | valid))
    flags |= ok
    flags &= keep
    return SceneMasks(flags=flags, source="bayes" if bayes_cloud is not None else "summary_cloud", notes=notes)
