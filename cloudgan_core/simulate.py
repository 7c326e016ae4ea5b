"""Realistic simulated Sentinel-3 SLSTR Level-1 RBT products, for demos, tests and benchmarks.

The files follow the real product's layout: names, variable names, dtypes and packing (int16 with
``scale_factor``/``add_offset``/``_FillValue``), global attributes (``resolution`` strings,
``track_offset``), a tie-point geometry grid with NaN edge columns, flags with the real
``flag_masks``/``flag_meanings`` strings and a manifest with classification percentages and MD5s.

The scene: land and ocean from one fractal field, clouds from another (so cover varies across the
scene), snow patches on land, a few unfilled columns, a linear solar-zenith field. The cloud mask
(``summary_cloud``) is exactly where the simulated cloud is, and the radiances are computed from
the same fields, so mask and image agree. Seeded and deterministic: same arguments, same bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import xarray as xr

from cloudgan_core.atomic import atomic_dir, atomic_path
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

#: Typical solar irradiance per band (mW m-2 nm-1), as in the quality files.
SOLAR_IRRADIANCE = {"S1": 1837.39, "S2": 1525.94, "S3": 956.17, "S4": 365.90, "S5": 248.33, "S6": 78.33}
RADIANCE_SCALE = {"S1": 0.02, "S2": 0.02, "S3": 0.01, "S4": 0.005, "S5": 0.003, "S6": 0.001}
OCEAN_R = {"S1": 0.065, "S2": 0.045, "S3": 0.025, "S4": 0.012, "S5": 0.008, "S6": 0.005}
LAND_R = {"S1": 0.07, "S2": 0.10, "S3": 0.30, "S4": 0.05, "S5": 0.32, "S6": 0.22}
SNOW_R = {"S1": 0.92, "S2": 0.90, "S3": 0.86, "S4": 0.30, "S5": 0.08, "S6": 0.04}
CLOUD_R = {"S1": 0.80, "S2": 0.78, "S3": 0.76, "S4": 0.25, "S5": 0.55, "S6": 0.40}
TIE_RES_ACROSS, TIE_RES_ALONG, AN_RES, IN_RES = 16000, 1000, 500, 1000
FILL_I16 = -32768


@dataclass(frozen=True)
class SceneTruth:
    """The simulated fields behind a product (for tests that check the reader)."""

    cloud: np.ndarray
    land: np.ndarray
    snow: np.ndarray
    unfilled: np.ndarray
    sza: np.ndarray


def fractal_field(shape: tuple[int, int], rng: np.random.Generator, beta: float = 3.0) -> np.ndarray:
    """Gaussian random field with a 1/f**beta power spectrum, scaled to [0, 1]; float32."""
    noise = rng.standard_normal(shape).astype(np.float32)
    spec = np.fft.rfft2(noise)
    fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec *= f ** (-beta / 2.0)
    spec[0, 0] = 0.0
    field = np.fft.irfft2(spec, s=shape).astype(np.float32)
    field -= field.min()
    field /= max(float(field.max()), 1e-12)
    return field


def product_name(seed: int, platform: str = "S3A") -> str:
    """A valid-looking SL_1_RBT product name (with ``.SEN3``) derived from the seed."""
    start = datetime(2024, 6, 1, 10, 0, 0, tzinfo=timezone.utc) + timedelta(days=seed % 365, minutes=3 * (seed // 365))
    stop = start + timedelta(minutes=3)
    made = start + timedelta(hours=2)
    fmt = "%Y%m%dT%H%M%S"
    return (f"{platform}_SL_1_RBT____{start.strftime(fmt)}_{stop.strftime(fmt)}_{made.strftime(fmt)}_0179_"
            f"{100 + seed % 20:03d}_{seed % 385:03d}_{(1800 + 3 * seed) % 10000:04d}_PS1_O_NT_004.SEN3")


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


def _write_nc(path: Path, data_vars: dict, attrs: dict, encoding: dict) -> None:
    ds = xr.Dataset(data_vars, attrs=attrs)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)


def _packed(name: str, values: np.ndarray, dims: tuple[str, str], scale: float, offset: float, attrs: dict,
            chunks: tuple[int, int]) -> tuple[xr.DataArray, dict]:
    arr = xr.DataArray(values.astype(np.float32), dims=dims, attrs=attrs)
    enc = {"dtype": "int16", "scale_factor": scale, "add_offset": offset, "_FillValue": np.int16(FILL_I16),
           "zlib": True, "complevel": 1, "chunksizes": chunks}
    return arr, enc


def _flag_var(values: np.ndarray, meanings: str, dims: tuple[str, str], dtype: type) -> xr.DataArray:
    n = len(meanings.split())
    return xr.DataArray(values.astype(dtype), dims=dims,
                        attrs={"flag_masks": (np.uint64(1) << np.arange(n, dtype=np.uint64)).astype(dtype),
                               "flag_meanings": meanings})


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


def _scene(rng: np.random.Generator, rows: int, cols: int, cloud_cover: float, land_fraction: float,
           sza_range: tuple[float, float]) -> dict:
    land_field = fractal_field((rows, cols), rng, beta=3.6)
    land = land_field > np.quantile(land_field, 1.0 - land_fraction) if land_fraction > 0 else np.zeros((rows, cols), bool)
    snow_field = fractal_field((rows, cols), rng, beta=3.0)
    snow = land & (snow_field > np.quantile(snow_field, 0.985))
    # small-scale texture on a large-scale envelope: clouds come in systems with clear gaps between
    tau = fractal_field((rows, cols), rng, beta=2.6) + 1.5 * fractal_field((rows, cols), rng, beta=4.5)
    thresh = np.quantile(tau, 1.0 - cloud_cover) if cloud_cover > 0 else np.float32(2.0)
    cloud = tau > thresh
    span = max(float(tau.max() - thresh), 1e-6)
    opacity = np.where(cloud, 0.35 + 0.65 * np.clip((tau - thresh) / (0.45 * span), 0, 1) ** 0.6, 0).astype(np.float32)
    texture = fractal_field((rows, cols), rng, beta=2.0)
    unfilled = np.zeros((rows, cols), bool)
    edge = max(2, cols // 200)
    unfilled[:, :edge] = True
    r0, r1 = sza_range
    return {"land": land, "snow": snow, "cloud": cloud, "opacity": opacity, "texture": texture,
            "unfilled": unfilled, "sza0": r0, "sza_along": (r1 - r0) * 0.7, "sza_across": (r1 - r0) * 0.3}


def _sza(sc: dict, r: np.ndarray, c: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The simulated solar zenith (degrees): linear in image row and column."""
    return sc["sza0"] + sc["sza_along"] * (r / max(rows - 1, 1)) + sc["sza_across"] * (c / max(cols - 1, 1))


def simulate_product(out_dir: str | Path, *, seed: int = 0, rows: int = 240, cols: int = 300, name: str | None = None,
                     as_zip: bool = False, cloud_cover: float | None = None, land_fraction: float | None = None,
                     sza_range: tuple[float, float] | None = None, bayes: bool = False, platform: str = "S3A",
                     return_truth: bool = False) -> Path | tuple[Path, SceneTruth]:
    """Write one simulated SL_1_RBT product.

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
    cloud_cover, land_fraction
        Scene fractions in [0, 1]; random (seeded) when None.
    sza_range
        Solar zenith (degrees) at the first and the last pixel; default from the seed, daytime.
    bayes
        Also fill ``bayes_an`` (otherwise 255 everywhere: "not computed", as in early baselines).
    return_truth
        Also return the simulated fields (:class:`SceneTruth`).
    """
    if rows % 2 or cols % 2 or rows < 8 or cols < 64:
        raise ValueError("rows and cols must be even, rows >= 8 and cols >= 64")
    rng = np.random.default_rng(seed)
    name = (name or product_name(seed, platform)).removesuffix(".SEN3") + ".SEN3"
    cover = float(rng.uniform(0.25, 0.6)) if cloud_cover is None else cloud_cover
    land_frac = float(rng.uniform(0.15, 0.45)) if land_fraction is None else land_fraction
    sza_lim = sza_range or (float(rng.uniform(25, 45)), float(rng.uniform(50, 70)))
    start = datetime.strptime(name.split("_")[7], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    sc = _scene(rng, rows, cols, cover, land_frac, sza_lim)

    an_offset = int(round(cols * 1996 / 3000))
    tn_offset = int(np.ceil(an_offset * AN_RES / TIE_RES_ACROSS)) + 2
    n_nan = max(2, int(round(18 * cols / 3000)))
    tn_cols = tn_offset + int(np.ceil((cols - an_offset) * AN_RES / TIE_RES_ACROSS)) + 2 + n_nan
    tn_rows = rows // 2
    an_dims, in_dims, tn_dims = ("rows", "columns"), ("rows", "columns"), ("rows", "columns")
    an_attrs = _global_attrs(name, (AN_RES, AN_RES), an_offset, start)
    in_attrs = _global_attrs(name, (IN_RES, IN_RES), an_offset // 2, start)
    tn_attrs = _global_attrs(name, (TIE_RES_ACROSS, TIE_RES_ALONG), tn_offset, start)
    an_chunks = (max(1, rows // 2), max(1, cols // 2))

    rr = np.arange(rows, dtype=np.float32)[:, None]
    cc = np.arange(cols, dtype=np.float32)[None, :]
    sza = _sza(sc, rr, cc, rows, cols).astype(np.float32)
    mu = np.clip(np.cos(np.deg2rad(sza)), 0.0, None)

    def build(folder: Path) -> None:
        written: dict[str, tuple[int, str]] = {}

        def done(fname: str) -> None:
            data = (folder / fname).read_bytes()
            written[fname] = (len(data), hashlib.md5(data, usedforsecurity=False).hexdigest())

        land, snow, cloud, op, tex, unfilled = (sc[k] for k in ("land", "snow", "cloud", "opacity", "texture", "unfilled"))
        det = (np.arange(rows) % 4).astype(np.uint8)[:, None].repeat(cols, axis=1)
        for band, e0 in SOLAR_IRRADIANCE.items():
            surf = np.where(land, LAND_R[band] * (0.75 + 0.5 * tex), OCEAN_R[band] * (0.9 + 0.2 * tex))
            surf = np.where(snow, SNOW_R[band], surf)
            refl = surf * (1 - op) + CLOUD_R[band] * (0.75 + 0.25 * tex) * op
            e0_det = e0 * (1 + 0.002 * np.arange(4))
            rad = refl * e0_det[det] * mu / np.pi / ADJUSTMENT_FACTORS[band]
            rad = np.where(unfilled, np.nan, rad)
            var, enc = _packed(f"{band}_radiance_an", rad, an_dims, RADIANCE_SCALE[band], 0.0,
                               {"long_name": f"TOA radiance for channel {band} (A stripe grid, nadir view)",
                                "standard_name": "toa_upwelling_spectral_radiance", "units": "mW.m-2.sr-1.nm-1"},
                               an_chunks)
            _write_nc(folder / f"{band}_radiance_an.nc", {f"{band}_radiance_an": var}, an_attrs, {f"{band}_radiance_an": enc})
            done(f"{band}_radiance_an.nc")
            q = xr.DataArray(e0_det, dims=("detectors",), attrs={"long_name": "Solar irradiance at top of atmosphere",
                                                                 "units": "mW m^-2 nm^-1"})
            _write_nc(folder / f"{band}_quality_an.nc", {f"{band}_solar_irradiance_an": q}, an_attrs, {})
            done(f"{band}_quality_an.nc")

        _write_nc(folder / "indices_an.nc", {"detector_an": xr.DataArray(det, dims=an_dims)}, an_attrs,
                  {"detector_an": {"zlib": True, "complevel": 1}})
        done("indices_an.nc")

        # flags: confidence_an with the real bit layout
        coast = land ^ np.roll(land, 1, axis=1)
        conf = np.zeros((rows, cols), np.uint16)
        day = sza < 90
        twilight = (sza >= 85) & (sza < 95)
        nadir_band = np.abs(np.arange(cols) - an_offset)[None, :] < max(2, cols // 40)
        glint = ~land & nadir_band & (sza < 40)
        for bit, plane in (("ocean", ~land), ("land", land), ("coastline", coast), ("unfilled", unfilled), ("day", day),
                           ("twilight", twilight), ("sun_glint", glint), ("snow", snow), ("summary_cloud", cloud)):
            conf |= plane.astype(np.uint16) * np.uint16(CONF[bit])
        cloud_an = (cloud.astype(np.uint16) * np.uint16(1 << 7)) | ((op > 0.6).astype(np.uint16) * np.uint16(1))
        if bayes:
            bayes_an = (cloud.astype(np.uint8) * 3) | ((op > 0.5).astype(np.uint8) * 12)
        else:
            bayes_an = np.full((rows, cols), 255, np.uint8)
        flag_vars = {
            "confidence_an": _flag_var(conf, CONFIDENCE_MEANINGS, an_dims, np.uint16),
            "cloud_an": _flag_var(cloud_an, CLOUD_MEANINGS, an_dims, np.uint16),
            "bayes_an": _flag_var(bayes_an, BAYES_MEANINGS, an_dims, np.uint8),
            "pointing_an": _flag_var(np.zeros((rows, cols), np.uint8), POINTING_MEANINGS, an_dims, np.uint8),
        }
        _write_nc(folder / "flags_an.nc", flag_vars, an_attrs,
                  {k: {"zlib": True, "complevel": 1, "chunksizes": an_chunks} for k in flag_vars})
        done("flags_an.nc")

        # tie-point geometry: the same linear SZA field sampled at tie positions; NaN edge columns.
        # All grids start on the same along-track line: tie row i lies on image row i * res_tn / res_an.
        ti = np.arange(tn_rows, dtype=np.float64)[:, None]
        tj = np.arange(tn_cols, dtype=np.float64)[None, :]
        r_img = ti * (TIE_RES_ALONG / AN_RES)
        c_img = an_offset + (tj - tn_offset) * (TIE_RES_ACROSS / AN_RES)
        geo = {
            "solar_zenith_tn": _sza(sc, r_img, c_img, rows, cols) + 0 * tj,
            "solar_azimuth_tn": 140.0 + 0.01 * r_img + 0.002 * c_img,
            "sat_zenith_tn": np.abs(c_img - an_offset) * 0.018 + 0 * ti,
            "sat_azimuth_tn": np.where(c_img < an_offset, 100.0, 280.0) + 0 * ti,
        }
        geo_vars = {}
        for k, v in geo.items():
            v = np.array(v, dtype=np.float64)
            v[:, tn_cols - n_nan:] = np.nan
            geo_vars[k] = xr.DataArray(v, dims=tn_dims, attrs={"units": "degrees", "standard_name": k.removesuffix("_tn") + "_angle"})
        _write_nc(folder / "geometry_tn.nc", geo_vars, tn_attrs,
                  {k: {"zlib": True, "complevel": 1, "_FillValue": np.nan} for k in geo_vars})
        done("geometry_tn.nc")

        # thermal channels on the 1 km grid
        half = (slice(None, None, 2), slice(None, None, 2))
        for band, (c_bt, o_bt, l_bt) in {"S7": (240, 272, 292), "S8": (228, 273, 290), "S9": (226, 272, 289)}.items():
            bt = np.where(land[half], l_bt - 8 * tex[half], o_bt + 2 * tex[half])
            bt = np.where(snow[half], 258.0, bt)
            bt = bt * (1 - op[half]) + (c_bt - 20 * tex[half]) * op[half]
            bt = np.where(unfilled[half], np.nan, bt)
            var, enc = _packed(f"{band}_BT_in", bt, in_dims, 0.01, 283.73,
                               {"standard_name": "toa_brightness_temperature", "units": "K"},
                               (max(1, rows // 4), max(1, cols // 4)))
            _write_nc(folder / f"{band}_BT_in.nc", {f"{band}_BT_in": var}, in_attrs, {f"{band}_BT_in": enc})
            done(f"{band}_BT_in.nc")

        lat0 = float(rng.uniform(-60, 60))
        lon0 = float(rng.uniform(-170, 160))
        h, w = rows * AN_RES / 111e3, cols * AN_RES / 111e3
        corners = [(lat0, lon0), (lat0, lon0 + w), (lat0 + h, lon0 + w), (lat0 + h, lon0), (lat0, lon0)]
        footprint = " ".join(f"{a:.4f} {b:.4f}" for a, b in corners)
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
    if return_truth:
        return target, SceneTruth(cloud=sc["cloud"], land=sc["land"], snow=sc["snow"], unfilled=sc["unfilled"], sza=sza)
    return target
