r"""Realistic simulated Sentinel-3 SLSTR Level-1 RBT products, for demos, tests and benchmarks.

Layout
------
The files follow the real product's layout (checked against a real SL_1_RBT product): names,
variable names, dtypes and packing, global attributes (``resolution`` strings, ``track_offset``),
dimension names:

- ``S1..S6_radiance_an.nc``: ``S{n}_radiance_an`` int16 with ``scale_factor`` (:data:`RADIANCE_SCALE`),
  ``add_offset`` 0 and ``_FillValue`` -32768 on the 500 m ``an`` grid, written so that the reader's
  reflectance ``R = pi L k / (E0 cos SZA)`` (:mod:`cloudgan_core.slstr.radiance`, k the radiance
  adjustment factor) returns the simulated reflectance to within the int16 quantisation:
  ``L = R E0 cos(SZA) / (pi k)``, 0 where the sun is down; a reflectance whose radiance does
  not fit int16 saturates (the truth holds the saturated value);
- ``S1..S6_quality_an.nc``: ``S{n}_solar_irradiance_an`` per detector (4, float64);
- ``indices_an.nc``: ``detector_an``, detector ``row % 4``;
- ``S7..S9_BT_in.nc``: ``S{n}_BT_in`` int16, ``scale_factor`` 0.01, ``add_offset`` 283.73,
  ``_FillValue`` -32768, on the 1 km ``in`` grid (rows/2 x cols/2, ``track_offset`` half the an one),
  like the real S8: the surface's 1 km value, or where cloud touches the 1 km pixel the radiance
  (Planck) mean of its 2 x 2 rendered 500 m pixels;
- ``geometry_tn.nc``: ``solar_zenith_tn``, ``solar_azimuth_tn``, ``sat_zenith_tn``,
  ``sat_azimuth_tn`` (float64, degrees) on the 16 km x 1 km tie grid, NaN in the last columns;
- ``flags_an.nc``: ``confidence_an``, ``cloud_an``, ``bayes_an``, ``pointing_an`` with the real
  ``flag_masks``/``flag_meanings``;
- ``xfdumanifest.xml`` listing every file with its size and MD5.

All grids start on the same along-track line (tie row ``i`` lies on an row ``2 i``); the an grid's
nadir column ``track_offset`` is even (about 2/3 of the columns, as in the real 1996 of 3000) so a
1 km pixel covers exactly the 2 x 2 an pixels ``(2 r .. 2 r + 1, 2 c .. 2 c + 1)``.

Scene geometry
--------------
A descending daytime pass drawn north-up: rows run south (heading 180 deg, the renderer's default
frame), columns east, one tie row per km along track. The sub-satellite point is the an column
``track_offset``; the longitude puts it at 10:00 local solar time at the first line (Sentinel-3's
descending node); the date comes from the product name, the latitude is given or drawn within 50 deg
of the sun's declination (so the sun is up). For each tie point:

- view zenith from the across-track ground distance x (km) on a sphere (R = 6371 km, satellite
  altitude H = 814.5 km): gamma = |x| / R, tan(alpha) = R sin(gamma) / (R + H - R cos(gamma)),
  VZA = alpha + gamma (0 at nadir, 57 deg 1000 km off nadir); view azimuth (pixel -> satellite)
  90 deg west of the track, 270 deg east of it;
- sun position from the latitude, the longitude and the time (3 minutes per 1200 km): declination
  delta = -23.44 cos(2 pi (doy + 10) / 365), hour angle h = 15 (local solar time - 12) deg,
  cos(SZA) = sin(phi) sin(delta) + cos(phi) cos(delta) cos(h), solar azimuth
  atan2(-sin(h) cos(delta), sin(delta) cos(phi) - cos(delta) sin(phi) cos(h)) clockwise from north
  (in the eastern half of the sky in the morning). ``sza_range`` replaces the solar zenith by a field linear in the
  image row and column (first and last pixel given) for twilight and night scenes.

The angles of a pixel are the tie grid bilinearly interpolated by the reader's own
:func:`cloudgan_core.slstr.geometry.tie_to_image`, so the reader recovers them exactly.

Surface
-------
Classes (:data:`SURFACE_CLASSES`): sea, sea ice, forest, grassland, bare soil, desert, snow.
Boundaries come from fractal fields (:func:`cloudgan_core.clouds.fractal_field`; the large-scale ones
drawn at 1/4 resolution and interpolated): land where a field exceeds its ``1 - land_fraction``
quantile; snow on the highest land (a second field): 2-8 % of the land (mountains), more in a cold
climate; the snow-free land
split by a "moisture" field into desert < soil < grassland < forest; sea ice on the sea in a polar
climate. Each class has a reflectance spectrum (:data:`CLASS_REFLECTANCE`, top of atmosphere, S1-S6)
and a relative texture (:data:`CLASS_TEXTURE`) applied by one full-resolution fractal field
(spectral slope 2.4). Sea ice is a mix of ice and open water (concentration from the texture, dark
leads). Brightness temperatures: sea at the climate's base temperature (from latitude and season,
at least 271.5 K), land warmer by day (:data:`CLASS_WARMING_K`, scaled by cos SZA / 0.75), snow and
ice cold (min(T_base - 15, 265) K and min(T_base - 10, 268) K), S7 and S9 by class offsets from S8
(:data:`CLASS_S7_MINUS_S8_K`, :data:`CLASS_S8_MINUS_S9_K`), with a small texture; on the 1 km grid,
each 1 km pixel taking the class of its first 500 m pixel.

Sun glint (open water): Cox & Munk (1954) with a drawn wind speed W (m/s),

    sigma^2 = 0.003 + 0.00512 W,   cos(beta) = (cos ts + cos tv) / |s + v|,
    rho_g = pi F(omega) p(beta) / (4 cos ts cos tv cos^4 beta),   p = exp(-tan^2 beta / sigma^2) / (pi sigma^2)

(s, v the unit vectors to sun and sensor, beta the facet tilt, F the Schlick approximation of the
Fresnel reflectance with F(0) = 0.02), times an atmospheric transmittance per band
(:data:`GLINT_TRANSMITTANCE`), and + 100 K per unit glint reflectance in S7 (reflected sunlight at
3.7 um); computed on the 1 km grid (the angles are smooth) and applied to the open-water fraction of
a pixel. The ``sun_glint`` flag is set on ocean pixels where rho_g > :data:`GLINT_FLAG_REFLECTANCE`.

Clouds
------
The project's procedural cloud model (:mod:`cloudgan_core.clouds`) at scene scale. Cloud systems:
where a large-scale fractal field (slope 4, drawn coarse) plus 0.45 x a finer one (slope 3) exceeds
its ``1 - cloud_cover`` quantile, grown by a fringe of :data:`FRINGE` x the edge width (px). In them
the log-normal fractal optical thickness with thin edges of
:func:`~cloudgan_core.clouds.procedural_thickness` (mean tau 10-25, log-spread 0.6-0.9, spectral
slope 2.4-2.9, edge width 4-10 px, drawn per scene), times 0.6 + 0.8 d with d the depth inside the
system (the field above the core's edge in standard deviations, at most 3), so large systems have
thick cores; a cloud-top height field (log-normal, sigma 0.5, around a drawn median of 1.2-4 km,
clipped to 0.5-12 km). :func:`~cloudgan_core.clouds.render` lays them over the
surface in all nine bands, with shadows, in blocks of 256 rows x 128 columns, each with the sun and
view angles of its centre (as the pipeline renders a tile with its tile's angles) and a halo wide
enough for every shadow that falls into it. The cloud-top temperature falls from the sea's
temperature - 1 K with the lapse rate. ``summary_cloud`` is set where tau exceeds its
``1 - cloud_cover`` quantile, so the flagged fraction is ``cloud_cover``; the thin cloud below the
threshold (edges) stays unflagged, as in real products.

Seeded and deterministic: same arguments, same bytes.

Reference: Cox, C. & Munk, W. (1954), Measurement of the roughness of the sea surface from
photographs of the sun's glitter, J. Opt. Soc. Am. 44, 838-850.
"""

from __future__ import annotations

import math
import shutil
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import h5py
import numpy as np
from scipy.ndimage import binary_dilation

from cloudgan_core.atomic import atomic_dir, atomic_path
from cloudgan_core.clouds import (
    BANDS,
    REFLECTIVE,
    THERMAL,
    CloudField,
    Geometry,
    ProceduralClouds,
    brightness_temperature,
    fractal_field,
    planck_radiance,
    procedural_thickness,
    render,
    shadow_shift_per_km,
)
from cloudgan_core.digests import file_digest
from cloudgan_core.slstr.geometry import tie_to_image
from cloudgan_core.slstr.radiance import ADJUSTMENT_FACTORS

CONFIDENCE_MEANINGS = ("coastline ocean tidal land inland_water unfilled spare spare cosmetic duplicate day "
                       "twilight sun_glint snow summary_cloud summary_pointing")
CLOUD_MEANINGS = ("visible 1.37_threshold 1.6_small_histogram 1.6_large_histogram 2.25_small_histogram "
                  "2.25_large_histogram 11_spatial_coherence gross_cloud thin_cirrus medium_high fog_low_stratus "
                  "11_12_view_difference 3.7_11_view_difference thermal_histogram spare spare")
BAYES_MEANINGS = "single_low single_moderate dual_low dual_moderate spare spare spare spare"
POINTING_MEANINGS = ("FlipMirrorAbsoluteError FlipMirrorIntegratedError FlipMirrorRMSError ScanMirrorAbsoluteError "
                     "ScanMirrorIntegratedError ScanMirrorRMSError ScanTimeError Platform_Mode")
CONF = {name: 1 << i for i, name in enumerate(CONFIDENCE_MEANINGS.split())}
CLOUD_BITS = {name: 1 << i for i, name in enumerate(CLOUD_MEANINGS.split())}

#: Typical solar irradiance per band (mW m-2 nm-1), as in the quality files (detector d: x (1 + 0.002 d)).
SOLAR_IRRADIANCE = {"S1": 1837.39, "S2": 1525.94, "S3": 956.17, "S4": 365.90, "S5": 248.33, "S6": 78.33}
#: ``scale_factor`` of the int16 radiances (mW m-2 sr-1 nm-1 per count).
RADIANCE_SCALE = {"S1": 0.02, "S2": 0.02, "S3": 0.01, "S4": 0.005, "S5": 0.003, "S6": 0.001}
#: Packing of the brightness temperatures (as the real ``S8_BT_in``), K.
BT_SCALE, BT_OFFSET = 0.01, 283.73
TIE_RES_ACROSS, TIE_RES_ALONG, AN_RES, IN_RES = 16000, 1000, 500, 1000
FILL_I16 = -32768
N_DETECTORS = 4

#: Surface classes; :attr:`SceneTruth.classes` holds their index.
SURFACE_CLASSES: tuple[str, ...] = ("sea", "sea_ice", "forest", "grassland", "soil", "desert", "snow")
SEA, SEA_ICE, FOREST, GRASSLAND, SOIL, DESERT, SNOW = range(len(SURFACE_CLASSES))
#: Top-of-atmosphere reflectance of each class in S1..S6 (clear sky, before texture and glint).
CLASS_REFLECTANCE: dict[str, tuple[float, ...]] = {
    "sea": (0.065, 0.045, 0.025, 0.004, 0.008, 0.005),
    "sea_ice": (0.78, 0.74, 0.66, 0.05, 0.07, 0.04),
    "forest": (0.055, 0.035, 0.28, 0.010, 0.16, 0.07),
    "grassland": (0.08, 0.07, 0.32, 0.015, 0.26, 0.14),
    "soil": (0.12, 0.16, 0.25, 0.020, 0.33, 0.28),
    "desert": (0.22, 0.33, 0.42, 0.030, 0.52, 0.46),
    "snow": (0.93, 0.90, 0.84, 0.08, 0.07, 0.04),
}
#: Relative standard deviation of each class's reflectance texture.
CLASS_TEXTURE: dict[str, float] = {"sea": 0.04, "sea_ice": 0.12, "forest": 0.15, "grassland": 0.15, "soil": 0.15,
                                   "desert": 0.08, "snow": 0.04}
#: Daytime warming of land over the base temperature at cos(SZA) = 0.75, K (S8).
CLASS_WARMING_K: dict[str, float] = {"sea": 0.0, "sea_ice": 0.0, "forest": 3.0, "grassland": 6.0, "soil": 10.0,
                                     "desert": 15.0, "snow": 0.0}
#: Standard deviation of the S8 texture, K.
CLASS_TEXTURE_K: dict[str, float] = {"sea": 0.3, "sea_ice": 1.5, "forest": 1.0, "grassland": 1.5, "soil": 2.0,
                                     "desert": 2.0, "snow": 1.0}
#: S7 - S8 by day (reflected sunlight at 3.7 um), K.
CLASS_S7_MINUS_S8_K: dict[str, float] = {"sea": 1.5, "sea_ice": 0.5, "forest": 4.0, "grassland": 6.0, "soil": 9.0,
                                         "desert": 13.0, "snow": -1.0}
#: Split-window difference S8 - S9, K.
CLASS_S8_MINUS_S9_K: dict[str, float] = {"sea": 1.2, "sea_ice": 0.3, "forest": 0.8, "grassland": 0.9, "soil": 1.1,
                                         "desert": 1.6, "snow": 0.2}
#: Fraction of the glint reflectance reaching the sensor in S1..S6 (Rayleigh; water vapour in S4).
GLINT_TRANSMITTANCE = (0.80, 0.85, 0.90, 0.05, 0.92, 0.90)
#: Fresnel reflectance of water at normal incidence.
WATER_FRESNEL_0 = 0.02
#: S7 warming per unit glint reflectance, K.
GLINT_S7_K = 100.0
#: Glint reflectance above which an ocean pixel gets the ``sun_glint`` flag.
GLINT_FLAG_REFLECTANCE = 0.02
#: Freezing point of sea water, K.
SEA_FREEZING_K = 271.5

EARTH_RADIUS_KM, SAT_ALTITUDE_KM = 6371.0, 814.5
#: Ground speed of the sub-satellite point, km/s (1200 km per 3-minute granule).
GROUND_SPEED_KM_S = 6.67
#: Local solar time of the first line's sub-satellite point (Sentinel-3 descending node), hours.
LOCAL_TIME_H = 10.0
KM_PER_DEG = 111.195
#: Azimuth of increasing row index: the renderer's default frame (rows south, columns east).
HEADING_DEG = 180.0
#: Rendering blocks (rows, columns): each is rendered with the angles of its centre.
RENDER_BLOCK = (256, 128)
#: Width of the thin, unflagged cloud fringe around the flagged cloud, in edge widths.
FRINGE = 0.25
#: Smooth fields are drawn this many times coarser and interpolated.
COARSE = 4

_DIM_NAME = "This is a netCDF dimension but not a netCDF variable."


@dataclass(frozen=True)
class SceneTruth:
    """The simulated fields behind a product (for tests that check the reader), all on the 500 m grid.

    Attributes
    ----------
    cloud
        bool: the ``summary_cloud`` flag (tau > :attr:`tau_flag`).
    land, snow, unfilled
        bool: the ``land``, ``snow`` (snow on land and sea ice) and ``unfilled`` flags.
    sza
        float32: solar zenith angle, degrees (what the reader interpolates from the tie grid).
    classes
        uint8: index into :data:`SURFACE_CLASSES`.
    tau
        float32: cloud optical thickness at 0.55 um (0 where clear; > 0 but unflagged at thin edges).
    top_height_km
        float32: cloud-top height, km (0 where clear).
    tau_flag
        The optical thickness above which ``summary_cloud`` is set.
    shadow
        bool: clear pixels the clouds' shadows darken.
    sun_glint
        bool: the ``sun_glint`` flag.
    surface
        float32 (9, H, W): the clear-sky scene (S1-S6 reflectance, S7-S9 K, the latter the 2 x 2
        repeat of the 1 km values); NaN where unfilled.
    bands
        float32 (9, H, W): the scene with clouds and shadows as written: S1-S6 reflectance (NaN where
        the sun is down), S7-S9 the 2 x 2 repeat of the 1 km brightness temperatures; NaN where
        unfilled.
    solar_azimuth, view_zenith, view_azimuth
        float32: the other angles, degrees.
    """

    cloud: np.ndarray
    land: np.ndarray
    snow: np.ndarray
    unfilled: np.ndarray
    sza: np.ndarray
    classes: np.ndarray
    tau: np.ndarray
    top_height_km: np.ndarray
    tau_flag: float
    shadow: np.ndarray
    sun_glint: np.ndarray
    surface: np.ndarray
    bands: np.ndarray
    solar_azimuth: np.ndarray
    view_zenith: np.ndarray
    view_azimuth: np.ndarray


def product_name(seed: int, platform: str = "S3A") -> str:
    """A valid-looking SL_1_RBT product name (with ``.SEN3``) derived from the seed."""
    start = datetime(2024, 6, 1, 10, 0, 0, tzinfo=timezone.utc) + timedelta(days=seed % 365, minutes=3 * (seed // 365))
    stop = start + timedelta(minutes=3)
    made = start + timedelta(hours=2)
    fmt = "%Y%m%dT%H%M%S"
    return (f"{platform}_SL_1_RBT____{start.strftime(fmt)}_{stop.strftime(fmt)}_{made.strftime(fmt)}_0179_"
            f"{100 + seed % 20:03d}_{seed % 385:03d}_{(1800 + 3 * seed) % 10000:04d}_PS1_O_NT_004.SEN3")


# -- netCDF writing ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Var:
    """One netCDF variable: dimension names, data (written as its dtype), attributes."""

    dims: tuple[str, ...]
    data: np.ndarray
    attrs: dict


def _write_nc(path: Path, variables: dict[str, _Var], attrs: dict) -> None:
    """Write a netCDF-4 file with h5py: dimensions as netCDF-C writes them (HDF5 dimension scales
    without coordinate values), deflate level 1, no time stamps (same data, same bytes).

    h5py directly rather than xarray: a product has 18 files, and xarray's writer costs ~15 ms more
    per file, which is most of a small product's time."""
    sizes: dict[str, int] = {}
    for name, var in variables.items():
        for dim, n in zip(var.dims, var.data.shape, strict=True):
            if sizes.setdefault(dim, n) != n:
                raise ValueError(f"{path.name}: dimension {dim} is {sizes[dim]} and {n} ({name})")
    with h5py.File(path, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        scales = {}
        for i, (dim, n) in enumerate(sizes.items()):
            ds = f.create_dataset(dim, shape=(n,), dtype=">f4", track_times=False)
            ds.make_scale(f"{_DIM_NAME}{n:10d}")
            ds.attrs["_Netcdf4Dimid"] = np.int32(i)
            scales[dim] = ds
        for name, var in variables.items():
            data = var.data
            chunks = tuple(max(1, -(-n // 2)) for n in data.shape) if data.ndim == 2 else data.shape
            ds = f.create_dataset(name, data=data, chunks=chunks, compression="gzip", compression_opts=1,
                                  fillvalue=var.attrs.get("_FillValue"), track_times=False)
            for key, value in var.attrs.items():
                ds.attrs[key] = value
            for axis, dim in enumerate(var.dims):
                ds.dims[axis].attach_scale(scales[dim])


def _global_attrs(name: str, res: tuple[int, int], offset: int, start: datetime) -> dict:
    return {
        "product_name": name,
        "title": "S3 SLSTR L1 Radiance and Brightness Temperatures Product. (Simulated by cloudgan_core.simulate)",
        "institution": "SIM",
        "source": "cloudgan_core.simulate",
        "resolution": f"[ {res[0]} {res[1]} ]",
        "track_offset": np.int32(offset),
        "start_offset": np.int32(4081),
        "start_time": start.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "stop_time": (start + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
    }


def _packed_attrs(scale: float, offset: float, **attrs: str) -> dict:
    return {"_FillValue": np.int16(FILL_I16), "scale_factor": np.float64(scale), "add_offset": np.float64(offset),
            **attrs}


def _pack(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """int16 counts of ``values`` (NaN -> fill); values must fit the packing."""
    counts = np.rint((values - np.float32(offset)) / np.float32(scale))
    counts[np.isnan(counts)] = FILL_I16
    return counts.astype(np.int16)


def _flag_attrs(meanings: str, dtype: type) -> dict:
    n = len(meanings.split())
    return {"flag_masks": (np.uint64(1) << np.arange(n, dtype=np.uint64)).astype(dtype), "flag_meanings": meanings}


def _manifest(name: str, files: dict[str, tuple[int, str]], *, start: datetime, platform: str, cloud_pct: float,
              land_pct: float, footprint: str) -> str:
    objs = "\n".join(
        f'         <dataObject ID="{fname.rsplit(".", 1)[0]}Unit">\n'
        f'            <byteStream mimeType="application/x-netcdf" size="{size}">\n'
        f'               <fileLocation locatorType="URL" href="./{fname}"/>\n'
        f'               <checksum checksumName="MD5">{md5}</checksum>\n'
        f'            </byteStream>\n'
        f'         </dataObject>'
        for fname, (size, md5) in sorted(files.items())
    )
    summaries = "\n".join(
        f'                     <slstr:classificationSummary grid="{grid}">\n'
        f'                        <sentinel3:salineWaterPixels percentage="{100 - land_pct:.6f}"/>\n'
        f'                        <sentinel3:landPixels percentage="{land_pct:.6f}"/>\n'
        f'                        <sentinel3:cloudyPixels percentage="{cloud_pct:.6f}"/>\n'
        f'                     </slstr:classificationSummary>'
        for grid in ("1 km", "0.5 km stripe A", "0.5 km stripe B")
    )
    t0 = start.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    t1 = (start + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" xmlns:sentinel-safe="http://www.esa.int/safe/sentinel/1.1" xmlns:gml="http://www.opengis.net/gml" xmlns:sentinel3="http://www.esa.int/safe/sentinel/sentinel-3/1.0" xmlns:slstr="http://www.esa.int/safe/sentinel/sentinel-3/slstr/1.0" version="esa/safe/sentinel/sentinel-3/slstr/level-1/1.0">
   <metadataSection>
      <metadataObject ID="acquisitionPeriod" classification="DESCRIPTION" category="DMD">
         <metadataWrap mimeType="text/xml" vocabularyName="Sentinel-SAFE" textInfo="Acquisition Period"><xmlData>
            <sentinel-safe:acquisitionPeriod>
               <sentinel-safe:startTime>{t0}</sentinel-safe:startTime>
               <sentinel-safe:stopTime>{t1}</sentinel-safe:stopTime>
            </sentinel-safe:acquisitionPeriod>
         </xmlData></metadataWrap>
      </metadataObject>
      <metadataObject ID="platform" classification="DESCRIPTION" category="DMD">
         <metadataWrap mimeType="text/xml" vocabularyName="Sentinel-SAFE" textInfo="Platform Description"><xmlData>
            <sentinel-safe:platform>
               <sentinel-safe:familyName>Sentinel-3</sentinel-safe:familyName>
               <sentinel-safe:number>{platform[-1]}</sentinel-safe:number>
            </sentinel-safe:platform>
         </xmlData></metadataWrap>
      </metadataObject>
      <metadataObject ID="measurementFrameSet" classification="DESCRIPTION" category="DMD">
         <metadataWrap mimeType="text/xml" vocabularyName="Sentinel-SAFE" textInfo="Frame Set"><xmlData>
            <sentinel-safe:frameSet><sentinel-safe:footPrint srsName="http://www.opengis.net/def/crs/EPSG/0/4326">
               <gml:posList>{footprint}</gml:posList>
            </sentinel-safe:footPrint></sentinel-safe:frameSet>
         </xmlData></metadataWrap>
      </metadataObject>
      <metadataObject ID="generalProductInformation" classification="DESCRIPTION" category="DMD">
         <metadataWrap mimeType="text/xml" vocabularyName="Sentinel-SAFE" textInfo="General Product Information"><xmlData>
            <sentinel3:generalProductInformation>
               <sentinel3:productName>{name}</sentinel3:productName>
               <sentinel3:productType>SL_1_RBT___</sentinel3:productType>
               <sentinel3:timeliness>NT</sentinel3:timeliness>
               <sentinel3:baselineCollection>004</sentinel3:baselineCollection>
            </sentinel3:generalProductInformation>
         </xmlData></metadataWrap>
      </metadataObject>
      <metadataObject ID="slstrProductInformation" classification="DESCRIPTION" category="DMD">
         <metadataWrap mimeType="text/xml" vocabularyName="Sentinel-SAFE" textInfo="Slstr Product Information"><xmlData>
            <slstr:slstrProductInformation>
{summaries}
            </slstr:slstrProductInformation>
         </xmlData></metadataWrap>
      </metadataObject>
   </metadataSection>
   <dataObjectSection>
{objs}
   </dataObjectSection>
</xfdu:XFDU>
"""


# -- geometry ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Grids:
    """Sizes and offsets of the an, in and tn grids."""

    rows: int
    cols: int
    an_offset: int
    tn_offset: int
    tn_rows: int
    tn_cols: int
    n_nan: int

    @classmethod
    def of(cls, rows: int, cols: int) -> _Grids:
        an_offset = 2 * round(cols * 998 / 3000)  # even: the 1 km grid's offset is exactly half
        tn_offset = int(np.ceil(an_offset * AN_RES / TIE_RES_ACROSS)) + 2
        n_nan = max(2, round(18 * cols / 3000))
        tn_cols = tn_offset + int(np.ceil((cols - an_offset) * AN_RES / TIE_RES_ACROSS)) + 2 + n_nan
        return cls(rows, cols, an_offset, tn_offset, rows // 2, tn_cols, n_nan)

    def tie_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(along-track km (tn_rows, 1), across-track km east of nadir (1, tn_cols)) of the tie points."""
        y = np.arange(self.tn_rows, dtype=np.float64)[:, None] * (TIE_RES_ALONG / 1000.0)
        x = (np.arange(self.tn_cols, dtype=np.float64)[None, :] - self.tn_offset) * (TIE_RES_ACROSS / 1000.0)
        return y, x

    def to_image(self, tie: np.ndarray) -> np.ndarray:
        """A tie field on the an grid, exactly as the reader interpolates it."""
        return tie_to_image(tie, (self.rows, self.cols), tn_offset=self.tn_offset,
                            tn_res=(TIE_RES_ACROSS, TIE_RES_ALONG), im_offset=self.an_offset, im_res=(AN_RES, AN_RES))


def _declination_deg(when: datetime) -> float:
    doy = when.timetuple().tm_yday
    return -23.44 * math.cos(2.0 * math.pi * (doy + 10) / 365.0)


def _lat_lon(lat0: float, lon0: float, y_km: np.ndarray, x_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (deg) of points y km south and x km east of (lat0, lon0) on the first line."""
    lat = np.clip(lat0 - y_km / KM_PER_DEG, -89.9, 89.9)  # a scene may run over the pole: no division by 0
    lon = lon0 + x_km / (KM_PER_DEG * np.cos(np.deg2rad(lat)))
    return lat + 0.0 * x_km, (lon + 180.0) % 360.0 - 180.0


def _sun(lat: np.ndarray, lon: np.ndarray, utc_hours: np.ndarray, decl_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Solar zenith and azimuth (deg, azimuth clockwise from north) of points at ``utc_hours``."""
    phi, dec = np.deg2rad(lat), math.radians(decl_deg)
    h = np.deg2rad(15.0 * (utc_hours + lon / 15.0 - 12.0))
    cos_z = np.sin(phi) * math.sin(dec) + np.cos(phi) * math.cos(dec) * np.cos(h)
    sza = np.rad2deg(np.arccos(np.clip(cos_z, -1.0, 1.0)))
    saa = np.rad2deg(np.arctan2(-np.sin(h) * math.cos(dec),
                                math.sin(dec) * np.cos(phi) - math.cos(dec) * np.sin(phi) * np.cos(h))) % 360.0
    return sza, saa


def _view(x_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """View zenith and azimuth (deg) of a point x km east (> 0) or west (< 0) of the sub-satellite track."""
    gamma = np.abs(x_km) / EARTH_RADIUS_KM
    r, h = EARTH_RADIUS_KM, SAT_ALTITUDE_KM
    alpha = np.arctan2(r * np.sin(gamma), r + h - r * np.cos(gamma))  # off-nadir look angle
    vza = np.rad2deg(alpha + gamma)
    vaa = np.where(x_km < 0, HEADING_DEG - 90.0, HEADING_DEG + 90.0)
    return vza, vaa


@dataclass(frozen=True)
class _Geometry:
    """The scene's angles: the tie-grid fields as written and their interpolation on the an grid."""

    tie: dict[str, np.ndarray]  # the four geometry_tn fields, float64, NaN edge columns
    sza: np.ndarray  # float32 on the an grid
    saa: np.ndarray
    vza: np.ndarray
    vaa: np.ndarray
    lat0: float
    lon0: float
    decl: float


def _geometry(grids: _Grids, rng: np.random.Generator, start: datetime, sza_range: tuple[float, float] | None,
              latitude: float | None) -> _Geometry:
    decl = _declination_deg(start)
    drawn = float(np.clip(decl + rng.uniform(-50.0, 50.0), -65.0, 75.0))
    lat0 = drawn if latitude is None else latitude
    start_h = start.hour + start.minute / 60.0 + start.second / 3600.0
    lon0 = (15.0 * (LOCAL_TIME_H - start_h) + 180.0) % 360.0 - 180.0
    y, x = grids.tie_positions()
    lat, lon = _lat_lon(lat0, lon0, y, x)
    sza, saa = _sun(lat, lon, start_h + y / GROUND_SPEED_KM_S / 3600.0, decl)
    if sza_range is not None:
        r0, r1 = sza_range
        r_img = y * (TIE_RES_ALONG / AN_RES) + 0.0 * x
        c_img = grids.an_offset + x * (1000.0 / AN_RES)
        sza = (r0 + (r1 - r0) * 0.7 * r_img / max(grids.rows - 1, 1)
               + (r1 - r0) * 0.3 * c_img / max(grids.cols - 1, 1))
    vza, vaa = _view(x)
    tie = {"solar_zenith_tn": sza, "solar_azimuth_tn": saa, "sat_zenith_tn": vza + 0.0 * y,
           "sat_azimuth_tn": vaa + 0.0 * y}
    for values in tie.values():
        values[:, grids.tn_cols - grids.n_nan:] = np.nan
    image = {k: grids.to_image(v) for k, v in tie.items()}
    return _Geometry(tie, image["solar_zenith_tn"], image["solar_azimuth_tn"], image["sat_zenith_tn"],
                     image["sat_azimuth_tn"], lat0, lon0, decl)


def _glint(sza: np.ndarray, saa: np.ndarray, vza: np.ndarray, vaa: np.ndarray, wind_m_s: float) -> np.ndarray:
    """Cox-Munk sun-glint reflectance of a water surface (module docstring), float32; 0 with the sun low.

    Angles in degrees (float32 arrays of one shape)."""
    f32 = np.float32
    ts, tv = np.deg2rad(sza), np.deg2rad(vza)
    mu_s, mu_v = np.cos(ts), np.cos(tv)
    sin_s, sin_v = np.sin(ts), np.sin(tv)
    cos_2w = mu_s * mu_v + sin_s * sin_v * np.cos(np.deg2rad(saa - vaa))  # s . v
    cos_b = (mu_s + mu_v) / np.sqrt(np.maximum(f32(2.0) + f32(2.0) * cos_2w, f32(1e-6)))
    cos_b2 = cos_b * cos_b
    tan_b2 = (f32(1.0) - cos_b2) / cos_b2
    sigma2 = f32(0.003 + 0.00512 * wind_m_s)
    p = np.exp(-tan_b2 / sigma2) / f32(np.pi * sigma2)
    cos_w = np.sqrt(np.clip((f32(1.0) + cos_2w) * f32(0.5), 0.0, 1.0))
    fresnel = f32(WATER_FRESNEL_0) + f32(1.0 - WATER_FRESNEL_0) * (f32(1.0) - cos_w) ** 5
    rho = f32(np.pi) * fresnel * p / (f32(4.0) * np.maximum(mu_s, f32(0.1)) * mu_v * cos_b2 * cos_b2)
    rho[mu_s < f32(0.1)] = 0.0
    return rho.astype(np.float32, copy=False)


# -- surface -----------------------------------------------------------------------------------

def _smooth(shape: tuple[int, int], slope: float, rng: np.random.Generator) -> np.ndarray:
    """A fractal field (unit std) drawn :data:`COARSE` times coarser and bilinearly interpolated: for
    steep spectra (slope >= 3) the scales lost are those that carry almost no variance."""
    out = fractal_field((max(2, -(-shape[0] // COARSE)), max(2, -(-shape[1] // COARSE))), slope, rng)
    for axis, n in enumerate(shape):  # linear along each axis; pixel areas aligned; periodic like the field
        m = out.shape[axis]
        pos = (np.arange(n, dtype=np.float64) + 0.5) * (m / n) - 0.5
        i0 = np.floor(pos).astype(np.intp)
        w = (pos - i0).astype(np.float32).reshape((n, 1) if axis == 0 else (1, n))
        a, b = np.take(out, i0 % m, axis=axis), np.take(out, (i0 + 1) % m, axis=axis)
        b -= a
        b *= w
        a += b
        out = a
    return out


def _share(values: np.ndarray, fraction: float) -> np.ndarray:
    """``values`` above their ``1 - fraction`` quantile (none for 0)."""
    if fraction <= 0 or values.size == 0:
        return np.zeros(values.shape, bool)
    return values > np.quantile(values, 1.0 - min(fraction, 1.0))


@dataclass(frozen=True)
class _Surface:
    classes: np.ndarray  # uint8 (H, W)
    bands: np.ndarray  # float32 (9, H, W) on the an grid, thermal as the 2 x 2 repeat of the 1 km values
    thermal_in: np.ndarray  # float32 (3, H/2, W/2)
    glint: np.ndarray  # float32 (H/2, W/2): Cox-Munk glint reflectance of open water on the 1 km grid
    sea_temperature_k: float


def _base_temperature(lat: float, decl: float) -> float:
    """Near-surface temperature of the climate (K): warm tropics, cold poles, summer warmer than winter."""
    season = decl * math.copysign(1.0, lat) * min(abs(lat), 45.0) / 45.0
    return 300.0 - 0.0075 * lat * lat + 0.3 * season


def _surface(rng: np.random.Generator, grids: _Grids, geo: _Geometry, land_fraction: float) -> _Surface:
    rows, cols = shape = (grids.rows, grids.cols)
    lat_c = geo.lat0 - rows * AN_RES / 2000.0 / KM_PER_DEG
    t_base = _base_temperature(lat_c, geo.decl)
    t_sea = max(t_base, SEA_FREEZING_K)
    snow_share = float(np.clip((283.0 - t_base) / 20.0, 0.0, 0.7) + rng.uniform(0.02, 0.08))
    ice_share = float(np.clip((272.5 - t_base) / 6.0, 0.0, 0.85))
    desert = float(rng.uniform(0.0, 0.5) * math.exp(-(((abs(lat_c) - 25.0) / 12.0) ** 2)))
    soil, grass = float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.2, 0.4))
    wind = float(rng.uniform(3.0, 9.0))

    texture = fractal_field(shape, 2.4, rng)
    land_field = _smooth(shape, 3.6, rng) + np.float32(0.12) * texture
    land = _share(land_field, land_fraction) if land_fraction < 1 else np.ones(shape, bool)
    classes = np.full(shape, SEA, np.uint8)
    elevation = land_field + np.float32(0.6) * _smooth(shape, 3.0, rng)
    snow = np.zeros(shape, bool)
    snow[land] = _share(elevation[land], snow_share)
    moisture = _smooth(shape, 3.4, rng)
    bare = land & ~snow
    if bare.any():
        m = moisture[bare]
        cuts = np.quantile(m, np.clip(np.cumsum([desert, soil, grass]), 0.0, 1.0))
        classes[bare] = np.select([m < cuts[0], m < cuts[1], m < cuts[2]], [DESERT, SOIL, GRASSLAND], FOREST)
    classes[snow] = SNOW
    ice_field = _smooth(shape, 3.2, rng) + np.float32(0.3) * texture
    ice = np.zeros(shape, bool)
    ice[~land] = _share(ice_field[~land], ice_share)
    classes[ice] = SEA_ICE
    del land_field, elevation, moisture, ice_field

    # reflectance: class spectrum x (1 + a_class t), sea ice a mix of ice and open water (leads)
    shade = np.array([CLASS_TEXTURE[c] for c in SURFACE_CLASSES], np.float32)[classes]
    shade *= texture
    shade += np.float32(1.0)
    np.maximum(shade, np.float32(0.3), out=shade)
    concentration = np.clip(np.float32(0.8) + np.float32(0.5) * texture, 0.0, 1.0)
    # glint on the 1 km grid (the angles are smooth), on the open water of sea and sea ice (leads)
    glint = _glint(geo.sza[::2, ::2], geo.saa[::2, ::2], geo.vza[::2, ::2], geo.vaa[::2, ::2], wind)
    glint_water = glint.repeat(2, axis=0).repeat(2, axis=1)
    glint_water *= np.where(classes == SEA, np.float32(1.0),
                            np.where(ice, np.float32(1.0) - concentration, np.float32(0.0)))
    out = np.empty((len(BANDS), rows, cols), np.float32)
    for b in range(len(REFLECTIVE)):
        spectrum = np.array([CLASS_REFLECTANCE[c][b] for c in SURFACE_CLASSES], np.float32)
        plane = spectrum[classes] * shade
        plane[ice] = (concentration[ice] * spectrum[SEA_ICE] * shade[ice]
                      + (np.float32(1.0) - concentration[ice]) * spectrum[SEA])
        plane += np.float32(GLINT_TRANSMITTANCE[b]) * glint_water
        out[b] = plane
    del shade

    # brightness temperatures on the 1 km grid (each 1 km pixel takes the class and texture of its first
    # 500 m pixel), repeated 2 x 2 onto the 500 m grid
    half = (slice(None, None, 2), slice(None, None, 2))
    cls, tex, conc = classes[half], texture[half], concentration[half]
    mu0 = np.clip(np.cos(np.deg2rad(geo.sza[half])), 0.0, None)
    day = np.minimum(mu0 / np.float32(0.75), np.float32(1.3))

    def per_class(table: dict[str, float]) -> np.ndarray:
        return np.array([table[c] for c in SURFACE_CLASSES], np.float32)[cls]

    t8 = np.float32(t_sea) + per_class(CLASS_WARMING_K) * day + per_class(CLASS_TEXTURE_K) * tex
    snow_in, ice_in = cls == SNOW, cls == SEA_ICE
    t_snow, t_ice = min(t_base - 15.0, 265.0), min(t_base - 10.0, 268.0)
    t8[snow_in] = np.float32(t_snow) + np.float32(CLASS_TEXTURE_K["snow"]) * tex[snow_in]
    t8[ice_in] = (conc[ice_in] * np.float32(t_ice) + (np.float32(1.0) - conc[ice_in]) * np.float32(t_sea)
                  + np.float32(CLASS_TEXTURE_K["sea_ice"]) * tex[ice_in])
    t7 = t8 + per_class(CLASS_S7_MINUS_S8_K) * day + np.float32(GLINT_S7_K) * glint_water[half]
    t9 = t8 - per_class(CLASS_S8_MINUS_S9_K)
    thermal_in = np.stack([t7, t8, t9])
    out[len(REFLECTIVE):] = thermal_in.repeat(2, axis=1).repeat(2, axis=2)
    return _Surface(classes, out, thermal_in, glint, t_sea)


def _block_mean(bt: np.ndarray, band: str) -> np.ndarray:
    """Brightness temperature of each 2 x 2 block: the mean of the four pixels' Planck radiances."""
    rows, cols = bt.shape
    radiance = planck_radiance(bt, band).reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3), dtype=np.float32)
    return brightness_temperature(radiance, band)


# -- clouds ------------------------------------------------------------------------------------

def _clouds(rng: np.random.Generator, shape: tuple[int, int], cover: float) -> tuple[CloudField, float]:
    """The scene's cloud field and the tau above which ``summary_cloud`` is set (module docstring)."""
    if cover <= 0:
        return CloudField(np.zeros(shape, np.float32), 0.0), math.inf
    config = ProceduralClouds(mean_tau=float(rng.uniform(10.0, 25.0)), tau_spread=float(rng.uniform(0.6, 0.9)),
                              spectral_slope=float(rng.uniform(2.4, 2.9)), edge_width=float(rng.uniform(4.0, 10.0)))
    h_median = float(rng.uniform(1.2, 4.0))
    systems = _smooth(shape, 4.0, rng) + np.float32(0.45) * fractal_field(shape, 3.0, rng)
    core = _share(systems, cover) if cover < 1 else np.ones(shape, bool)
    if not core.any():  # a cover too small for one pixel
        return CloudField(np.zeros(shape, np.float32), 0.0), math.inf
    # the cloud: the core grown by a thin fringe, where the procedural edge taper stays below ~0.3
    radius = FRINGE * config.edge_width
    reach = int(radius)
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    mask = binary_dilation(core, structure=yy * yy + xx * xx <= radius * radius)  # distance to the core <= radius
    tau = procedural_thickness(mask, config, rng).tau
    # thicker deep inside a system: x (0.6 + 0.8 depth), depth = (field - core edge) / std, at most 3
    edge = float(systems[core].min())
    depth = np.clip((systems - np.float32(edge)) / np.float32(systems.std()), 0.0, 3.0)
    tau *= np.float32(0.6) + np.float32(0.8) * depth
    height = np.clip(np.float32(h_median) * np.exp(np.float32(0.5) * _smooth(shape, 3.5, rng)), 0.5, 12.0)
    height[~mask] = 0.0
    tau_flag = float(np.quantile(tau, 1.0 - cover))
    return CloudField(tau, height.astype(np.float32)), tau_flag


def _render(surface: np.ndarray, clouds: CloudField, geo: _Geometry, t_ref: float) -> tuple[np.ndarray, np.ndarray]:
    """Render ``clouds`` over ``surface`` block by block (module docstring); returns (bands, shadow)."""
    _, rows, cols = surface.shape
    bands, shadow = surface.copy(), np.zeros((rows, cols), bool)
    tau, height = clouds.tau, clouds.top_height_km
    if not tau.any():
        return bands, shadow
    h_max = float(height.max())
    for r0 in range(0, rows, RENDER_BLOCK[0]):
        for c0 in range(0, cols, RENDER_BLOCK[1]):
            r1, c1 = min(rows, r0 + RENDER_BLOCK[0]), min(cols, c0 + RENDER_BLOCK[1])
            rc, cc = (r0 + r1) // 2, (c0 + c1) // 2
            g = Geometry(min(float(geo.sza[rc, cc]), 85.0), float(geo.saa[rc, cc]), float(geo.vza[rc, cc]),
                         float(geo.vaa[rc, cc]))
            dr, dc = shadow_shift_per_km(g, AN_RES, HEADING_DEG)
            hr, hc = math.ceil(abs(dr) * h_max) + 1, math.ceil(abs(dc) * h_max) + 1
            a0, a1, b0, b1 = max(0, r0 - hr), min(rows, r1 + hr), max(0, c0 - hc), min(cols, c1 + hc)
            sub_tau = tau[a0:a1, b0:b1]
            if not sub_tau.any():
                continue
            out = render(surface[:, a0:a1, b0:b1], CloudField(sub_tau, height[a0:a1, b0:b1]), g,
                         surface_temperature_k=t_ref, pixel_size_m=AN_RES, heading_deg=HEADING_DEG)
            bands[:, r0:r1, c0:c1] = out.bands[:, r0 - a0:r1 - a0, c0 - b0:c1 - b0]
            shadow[r0:r1, c0:c1] = out.shadow[r0 - a0:r1 - a0, c0 - b0:c1 - b0]
    return bands, shadow


# -- the product -------------------------------------------------------------------------------

def simulate_product(out_dir: str | Path, *, seed: int = 0, rows: int = 240, cols: int = 300, name: str | None = None,
                     as_zip: bool = False, cloud_cover: float | None = None, land_fraction: float | None = None,
                     sza_range: tuple[float, float] | None = None, bayes: bool = False, platform: str = "S3A",
                     return_truth: bool = False, latitude: float | None = None) -> Path | tuple[Path, SceneTruth]:
    """Write one simulated SL_1_RBT product (the module docstring describes the scene and the files).

    Parameters
    ----------
    out_dir
        Folder to write into; the product is ``<out_dir>/<name>.SEN3`` (or ``<name>.zip``).
    seed
        Seeds every random field and the product name.
    rows, cols
        Size of the 500 m ``an`` grid (the real one is about 2400 x 3000). Even numbers.
    name
        Product name (with or without ``.SEN3``); derived from the seed when None.
    as_zip
        Write ``<name>.zip`` holding ``<name>.SEN3/`` instead of the folder.
    cloud_cover
        Fraction of the scene flagged ``summary_cloud``, in [0, 1]; random (seeded, 0.25-0.6) when None.
        Thin cloud edges come on top, unflagged.
    land_fraction
        Fraction of the scene that is land, in [0, 1]; random (seeded, 0.15-0.45) when None.
    sza_range
        Solar zenith (degrees) at the first and the last pixel, the field linear in row and column;
        default: the sun's position for the scene's place and time (daytime, mid-morning).
    bayes
        Also fill ``bayes_an`` (otherwise 255 everywhere: "not computed", as in early baselines).
    return_truth
        Also return the simulated fields (:class:`SceneTruth`).
    latitude
        Latitude of the first line's sub-satellite point, degrees north, in [-80, 80] (the scene
        extends south of it); default drawn within 50 deg of the sun's declination, so the sun is
        up. The climate (temperatures, snow, sea ice, desert) follows the latitude and the season.
    """
    if rows % 2 or cols % 2 or rows < 8 or cols < 64:
        raise ValueError("rows and cols must be even, rows >= 8 and cols >= 64")
    for what, value in (("cloud_cover", cloud_cover), ("land_fraction", land_fraction)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{what} must be within [0, 1], got {value!r}")
    if latitude is not None and not -80.0 <= latitude <= 80.0:
        raise ValueError(f"latitude must be within [-80, 80] degrees, got {latitude!r}")
    if sza_range is not None and (len(sza_range) != 2 or not all(0.0 <= float(v) <= 180.0 for v in sza_range)):
        raise ValueError(f"sza_range must hold two angles within [0, 180] degrees, got {sza_range!r}")
    rng = np.random.default_rng(seed)
    name = (name or product_name(seed, platform)).removesuffix(".SEN3") + ".SEN3"
    cover = float(rng.uniform(0.25, 0.6)) if cloud_cover is None else float(cloud_cover)
    land_frac = float(rng.uniform(0.15, 0.45)) if land_fraction is None else float(land_fraction)
    start = datetime.strptime(name.split("_")[7], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)

    grids = _Grids.of(rows, cols)
    geo = _geometry(grids, rng, start, sza_range, latitude)
    surf = _surface(rng, grids, geo, land_frac)
    clouds, tau_flag = _clouds(rng, (rows, cols), cover)
    rendered, shadow = _render(surf.bands, clouds, geo, surf.sea_temperature_k - 1.0)
    surface = surf.bands if return_truth else None  # 9 planes: kept for the truth only
    classes, glint, thermal_in = surf.classes, surf.glint, surf.thermal_in
    del surf

    unfilled = np.zeros((rows, cols), bool)
    unfilled[:, :2 * max(1, cols // 400)] = True  # an even count: whole 1 km columns
    cloud = clouds.tau > tau_flag
    land = classes >= FOREST
    snow = (classes == SNOW) | (classes == SEA_ICE)
    day = geo.sza < 90
    glint_flag = ~land & day & (glint > GLINT_FLAG_REFLECTANCE).repeat(2, axis=0).repeat(2, axis=1)

    # S1-S6 radiance; the truth (the rendered bands, in place) keeps what the int16 can hold (saturation)
    # and is NaN with the sun down
    det = (np.arange(rows) % N_DETECTORS).astype(np.uint8)[:, None].repeat(cols, axis=1)
    mu = np.cos(np.deg2rad(geo.sza, dtype=np.float32))
    sun_up = mu > 0
    radiance_counts, e0_detectors = {}, {}
    for b, band in enumerate(REFLECTIVE):
        e0 = SOLAR_IRRADIANCE[band] * (1.0 + 0.002 * np.arange(N_DETECTORS))
        per_reflectance = (e0.astype(np.float32)[det] * np.where(sun_up, mu, np.float32(0.0))
                           / np.float32(np.pi * ADJUSTMENT_FACTORS[band]))
        radiance = rendered[b] * per_reflectance
        cap = np.float32(32767 * RADIANCE_SCALE[band])
        saturated = radiance > cap
        if saturated.any():
            radiance[saturated] = cap
            rendered[b][saturated] = cap / per_reflectance[saturated]
        rendered[b][~sun_up] = np.nan
        radiance[unfilled] = np.nan
        radiance_counts[band], e0_detectors[band] = _pack(radiance, RADIANCE_SCALE[band], 0.0), e0
    del per_reflectance, radiance

    # S7-S9: clear 1 km pixels keep the surface's values, cloudy ones the Planck mean of their four pixels
    touched = (clouds.tau > 0).reshape(rows // 2, 2, cols // 2, 2).any(axis=(1, 3))
    unfilled_in = unfilled[::2, ::2]
    bt_in = {}
    for k, band in enumerate(THERMAL):
        values = thermal_in[k].copy()
        if touched.any():
            values[touched] = _block_mean(rendered[len(REFLECTIVE) + k], band)[touched]
        rendered[len(REFLECTIVE) + k] = values.repeat(2, axis=0).repeat(2, axis=1)
        values[unfilled_in] = np.nan
        bt_in[band] = values
    rendered[:, unfilled] = np.nan

    def build(folder: Path) -> None:
        written: dict[str, tuple[int, str]] = {}
        an_attrs = _global_attrs(name, (AN_RES, AN_RES), grids.an_offset, start)
        in_attrs = _global_attrs(name, (IN_RES, IN_RES), grids.an_offset // 2, start)
        tn_attrs = _global_attrs(name, (TIE_RES_ACROSS, TIE_RES_ALONG), grids.tn_offset, start)
        an_dims = ("rows", "columns")

        def write(fname: str, variables: dict[str, _Var], attrs: dict) -> None:
            _write_nc(folder / fname, variables, attrs)
            path = folder / fname
            written[fname] = (path.stat().st_size, file_digest(path, "md5"))

        for band in REFLECTIVE:
            attrs = _packed_attrs(RADIANCE_SCALE[band], 0.0,
                                  long_name=f"TOA radiance for channel {band} (A stripe grid, nadir view)",
                                  standard_name="toa_upwelling_spectral_radiance", units="mW.m-2.sr-1.nm-1")
            write(f"{band}_radiance_an.nc", {f"{band}_radiance_an": _Var(an_dims, radiance_counts[band], attrs)},
                  an_attrs)
            write(f"{band}_quality_an.nc", {f"{band}_solar_irradiance_an": _Var(
                ("detectors",), e0_detectors[band],
                {"_FillValue": np.float64(np.nan), "long_name": "Solar irradiance at top of atmosphere",
                 "units": "mW m^-2 nm^-1"})}, an_attrs)
        write("indices_an.nc", {"detector_an": _Var(an_dims, det, {})}, an_attrs)

        conf = np.zeros((rows, cols), np.uint16)
        coast = land ^ np.roll(land, 1, axis=1)
        twilight = (geo.sza >= 85) & (geo.sza < 95)
        for bit, plane in (("ocean", ~land), ("land", land), ("coastline", coast), ("unfilled", unfilled),
                           ("day", day), ("twilight", twilight), ("sun_glint", glint_flag), ("snow", snow),
                           ("summary_cloud", cloud)):
            conf |= plane.astype(np.uint16) * np.uint16(CONF[bit])
        thick = clouds.tau > 5.0
        high = cloud & (clouds.top_height_km > 6.0)
        cloud_an = np.zeros((rows, cols), np.uint16)
        for bit, plane in (("gross_cloud", cloud), ("visible", thick), ("1.37_threshold", high), ("thin_cirrus",
                           high & ~thick), ("medium_high", cloud & (clouds.top_height_km > 3.0))):
            cloud_an |= plane.astype(np.uint16) * np.uint16(CLOUD_BITS[bit])
        if bayes:
            bayes_an = (cloud.astype(np.uint8) * 3) | (thick.astype(np.uint8) * 12)
        else:
            bayes_an = np.full((rows, cols), 255, np.uint8)
        write("flags_an.nc", {
            "confidence_an": _Var(an_dims, conf, _flag_attrs(CONFIDENCE_MEANINGS, np.uint16)),
            "cloud_an": _Var(an_dims, cloud_an, _flag_attrs(CLOUD_MEANINGS, np.uint16)),
            "bayes_an": _Var(an_dims, bayes_an, _flag_attrs(BAYES_MEANINGS, np.uint8)),
            "pointing_an": _Var(an_dims, np.zeros((rows, cols), np.uint8), _flag_attrs(POINTING_MEANINGS, np.uint8)),
        }, an_attrs)

        names = {"solar_zenith_tn": ("Solar zenith angle", "solar_zenith_angle"),
                 "solar_azimuth_tn": ("Solar azimuth angle", "solar_azimuth_angle"),
                 "sat_zenith_tn": ("Satellite zenith angle", "satellite_zenith_angle"),
                 "sat_azimuth_tn": ("Satellite azimuth angle", "satellite_azimuth_angle")}
        write("geometry_tn.nc", {k: _Var(an_dims, geo.tie[k], {"_FillValue": np.float64(np.nan), "long_name": ln,
                                                              "standard_name": sn, "units": "degrees"})
                                 for k, (ln, sn) in names.items()}, tn_attrs)

        for band in THERMAL:
            attrs = _packed_attrs(BT_SCALE, BT_OFFSET, long_name=f"Gridded pixel brightness temperature for channel "
                                  f"{band} (1km TIR grid, nadir view)", standard_name="toa_brightness_temperature",
                                  units="K")
            write(f"{band}_BT_in.nc", {f"{band}_BT_in": _Var(an_dims, _pack(bt_in[band], BT_SCALE, BT_OFFSET), attrs)},
                  in_attrs)

        y_km = np.array([0.0, 0.0, rows * AN_RES / 1000.0, rows * AN_RES / 1000.0, 0.0])
        x_km = (np.array([0.0, cols, cols, 0.0, 0.0]) - grids.an_offset) * (AN_RES / 1000.0)
        lat, lon = _lat_lon(geo.lat0, geo.lon0, y_km, x_km)
        footprint = " ".join(f"{a:.4f} {b:.4f}" for a, b in zip(lat, lon, strict=True))
        valid = ~unfilled
        manifest = _manifest(name, written, start=start, platform=platform,
                             cloud_pct=100.0 * float(cloud[valid].mean()), land_pct=100.0 * float(land[valid].mean()),
                             footprint=footprint)
        (folder / "xfdumanifest.xml").write_text(manifest, encoding="utf-8")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if as_zip:
        target = out_dir / (name.removesuffix(".SEN3") + ".zip")
        with atomic_dir(out_dir / f".{name}.build") as folder:
            build(folder)
            with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
                for f in sorted(folder.iterdir()):
                    info = zipfile.ZipInfo(f"{name}/{f.name}", date_time=(2020, 1, 1, 0, 0, 0))
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, f.read_bytes())
        shutil.rmtree(out_dir / f".{name}.build", ignore_errors=True)
    else:
        target = out_dir / name
        with atomic_dir(target) as folder:
            build(folder)
    if surface is None:
        return target
    surface[:, unfilled] = np.nan
    return target, SceneTruth(
        cloud=cloud, land=land, snow=snow, unfilled=unfilled, sza=geo.sza, classes=classes, tau=clouds.tau,
        top_height_km=clouds.top_height_km if isinstance(clouds.top_height_km, np.ndarray)
        else np.zeros((rows, cols), np.float32),
        tau_flag=tau_flag, shadow=shadow, sun_glint=glint_flag, surface=surface, bands=rendered,
        solar_azimuth=geo.saa, view_zenith=geo.vza, view_azimuth=geo.vaa)
