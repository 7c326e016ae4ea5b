"""The simulator: deterministic bytes, manifest MD5s, the real products' packing and layout."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from cloudgan_core.simulate import FILL_I16, RADIANCE_SCALE, SEA_ICE, product_name, simulate_product
from cloudgan_core.slstr.manifest import MANIFEST_NAME, parse_manifest

ROWS, COLS = 48, 96
EXPECTED_FILES = {
    *(f"S{n}_radiance_an.nc" for n in range(1, 7)), *(f"S{n}_quality_an.nc" for n in range(1, 7)),
    *(f"S{n}_BT_in.nc" for n in (7, 8, 9)), "indices_an.nc", "flags_an.nc", "geometry_tn.nc", MANIFEST_NAME,
}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = simulate_product(tmp_path / "a", seed=21, rows=ROWS, cols=COLS)
    b = simulate_product(tmp_path / "b", seed=21, rows=ROWS, cols=COLS)
    assert a.name == b.name
    da, db = _digests(a), _digests(b)
    assert set(da) == EXPECTED_FILES
    assert da == db
    za = simulate_product(tmp_path / "za", seed=21, rows=ROWS, cols=COLS, as_zip=True)
    zb = simulate_product(tmp_path / "zb", seed=21, rows=ROWS, cols=COLS, as_zip=True)
    assert za.read_bytes() == zb.read_bytes()
    assert [p.name for p in (tmp_path / "za").iterdir()] == [za.name]  # no build folder left behind
    with zipfile.ZipFile(za) as zf:
        members = {n: hashlib.md5(zf.read(n), usedforsecurity=False).hexdigest() for n in zf.namelist()}
    assert members == {f"{a.name}/{k}": v for k, v in da.items()}


def test_different_seed_different_product(tmp_path: Path) -> None:
    a = simulate_product(tmp_path / "a", seed=21, rows=ROWS, cols=COLS)
    b = simulate_product(tmp_path / "b", seed=22, rows=ROWS, cols=COLS)
    assert a.name != b.name
    da, db = _digests(a), _digests(b)
    for name in ("flags_an.nc", "S1_radiance_an.nc", "S8_BT_in.nc", MANIFEST_NAME):
        assert da[name] != db[name], name


def test_manifest_md5s_match_the_files(tmp_path: Path) -> None:
    folder = simulate_product(tmp_path, seed=3, rows=ROWS, cols=COLS)
    manifest = parse_manifest((folder / MANIFEST_NAME).read_bytes())
    digests = _digests(folder)
    assert set(manifest.files) == set(digests) - {MANIFEST_NAME}
    for name, entry in manifest.files.items():
        assert entry.md5 == digests[name], name
        assert entry.size == (folder / name).stat().st_size, name
    assert manifest.product_name == folder.name == product_name(3)


def test_packing_is_int16_with_scale_offset_fill(tmp_path: Path) -> None:
    folder, truth = simulate_product(tmp_path, seed=4, rows=ROWS, cols=COLS, return_truth=True)
    with h5py.File(folder / "S1_radiance_an.nc", "r") as f:
        var = f["S1_radiance_an"]
        assert var.dtype == np.int16
        attr = {k: np.asarray(var.attrs[k]).reshape(-1)[0] for k in ("scale_factor", "add_offset", "_FillValue")}
        assert attr["scale_factor"] == RADIANCE_SCALE["S1"] and attr["add_offset"] == 0.0
        assert attr["_FillValue"] == FILL_I16 and attr["_FillValue"].dtype == np.int16
        raw = var[...]
        assert var.compression == "gzip"
    np.testing.assert_array_equal(raw == FILL_I16, truth.unfilled)  # fill exactly at the unfilled columns
    with xr.open_dataset(folder / "S8_BT_in.nc", engine="h5netcdf", decode_cf=False) as ds:
        raw_bt = ds["S8_BT_in"]
        assert raw_bt.dtype == np.int16 and raw_bt.shape == (ROWS // 2, COLS // 2)
        assert raw_bt.attrs["scale_factor"] == 0.01 and raw_bt.attrs["add_offset"] == 283.73
        assert raw_bt.attrs["_FillValue"] == FILL_I16 and raw_bt.attrs["units"] == "K"
        raw_bt = raw_bt.values
    with xr.open_dataset(folder / "S8_BT_in.nc", engine="h5netcdf") as ds:
        bt = ds["S8_BT_in"].values
        assert ds.attrs["resolution"] == "[ 1000 1000 ]"
    np.testing.assert_array_equal(np.isnan(bt), raw_bt == FILL_I16)
    np.testing.assert_allclose(bt[~np.isnan(bt)], raw_bt[raw_bt != FILL_I16] * 0.01 + 283.73)
    assert 180 < np.nanmin(bt) and np.nanmax(bt) < 320


def test_file_layout_like_the_real_product(tmp_path: Path) -> None:
    folder = simulate_product(tmp_path, seed=6, rows=ROWS, cols=COLS)
    with xr.open_dataset(folder / "flags_an.nc", engine="h5netcdf") as ds:
        assert ds.attrs["resolution"] == "[ 500 500 ]" and int(ds.attrs["track_offset"]) == round(COLS * 1996 / 3000)
        conf = ds["confidence_an"]
        assert conf.dtype == np.uint16 and conf.shape == (ROWS, COLS)
        assert conf.attrs["flag_meanings"].split()[14:] == ["summary_cloud", "summary_pointing"]
        assert list(conf.attrs["flag_masks"]) == [1 << i for i in range(16)]
        assert ds["bayes_an"].dtype == np.uint8 and (ds["bayes_an"].values == 255).all()
    with xr.open_dataset(folder / "geometry_tn.nc", engine="h5netcdf") as ds:
        assert ds.attrs["resolution"] == "[ 16000 1000 ]" and int(ds.attrs["track_offset"]) == 4
        for var in ("solar_zenith_tn", "solar_azimuth_tn", "sat_zenith_tn", "sat_azimuth_tn"):
            angle = ds[var]
            assert angle.dtype == np.float64 and angle.dims == ("rows", "columns") and angle.attrs["units"] == "degrees"
            assert angle.shape[0] == ROWS // 2 and np.isnan(angle[:, -2:]).all() and not np.isnan(angle[:, :-2]).any()
            assert angle.attrs["standard_name"] == var.removesuffix("_tn").replace("sat_", "satellite_") + "_angle"
    for n in range(1, 7):
        with xr.open_dataset(folder / f"S{n}_quality_an.nc", engine="h5netcdf") as ds:
            e0 = ds[f"S{n}_solar_irradiance_an"]
            assert e0.dims == ("detectors",) and e0.shape == (4,) and e0.dtype == np.float64
            assert len(np.unique(e0.values)) == 4 and (e0.values > 0).all()
    with xr.open_dataset(folder / "S7_BT_in.nc", engine="h5netcdf") as ds:
        assert ds.attrs["resolution"] == "[ 1000 1000 ]" and int(ds.attrs["track_offset"]) == 32
        assert ds["S7_BT_in"].attrs["standard_name"] == "toa_brightness_temperature"


def test_requested_fractions_are_honoured(tmp_path: Path) -> None:
    _, truth = simulate_product(tmp_path, seed=8, rows=ROWS, cols=COLS, cloud_cover=0.3, land_fraction=0.4,
                                return_truth=True)
    assert truth.cloud.mean() == pytest.approx(0.3, abs=0.01)
    assert truth.land.mean() == pytest.approx(0.4, abs=0.01)
    np.testing.assert_array_equal(truth.snow & ~truth.land, truth.classes == SEA_ICE)  # snow at sea is sea ice
    assert truth.unfilled[:, 0].all() and not truth.unfilled[:, COLS // 2].any()


def test_bad_sizes_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        simulate_product(tmp_path, rows=47, cols=96)
    with pytest.raises(ValueError, match="cols >= 64"):
        simulate_product(tmp_path, rows=48, cols=32)
