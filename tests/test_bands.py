"""All nine bands through the scene stages (issue 11, "clouds in every band"): bands.npy of the
false colour stage against values computed by hand from the netCDF files (read independently with
xarray), the 2 x 2 repetition of the 1 km thermal grid, the tile angles against independent means,
bands and flags carried by the sorted groups, snow allowed on surfaces, the RGB approximation of
user surfaces, and clear errors for bad thermal and angle data."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from PIL import Image
from scipy.interpolate import RegularGridInterpolator

from cloudgan_core.clouds import BANDS
from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.flags import PIXEL_FLAG_BITS
from cloudgan_core.slstr.geometry import _tile_weights, grid_attrs, tile_angles
from cloudgan_core.slstr.product import PIPELINE_FILES, RADIANCE_BANDS, THERMAL_BANDS, open_product
from cloudgan_core.slstr.radiance import false_color as false_colour_of
from cloudgan_core.slstr.thermal import brightness_temperature
from cloudgan_core.stages import false_color, masks, products, sorted_tiles, surface_tiles, tiles
from cloudgan_core.tiles import ANGLE_COLUMNS
from tests.conftest import REAL_DIR

TILE = 64
#: S3.PN-SLSTR-L1.08 nadir adjustment factors, written out here rather than imported.
ADJUST = {"S1": 0.97, "S2": 0.98, "S3": 0.98, "S4": 1.0, "S5": 1.11, "S6": 1.13}
#: geometry_tn fields of the index's angle columns.
FIELDS = {"solar_zenith": "solar_zenith_tn", "solar_azimuth": "solar_azimuth_tn", "view_zenith": "sat_zenith_tn",
          "view_azimuth": "sat_azimuth_tn"}


def _chain(product: Path, root: Path) -> str:
    key = products.register(root, product).product
    masks.build(root, key)
    false_color.build(root, key)
    tiles.build(root, key, tiles.TilesConfig(tile_size=TILE))
    sorted_tiles.build(root, key)
    return key


@pytest.fixture(scope="module")
def chain(sim_product: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("bands")
    return root, _chain(sim_product, root)


def _sen3(root: Path, key: str) -> Path:
    return products.read(root, key)


def _resolution(attrs: dict) -> tuple[float, float]:
    across, along = (float(v) for v in str(attrs["resolution"]).strip("[] ").split())
    return across, along


class _Tie:
    """Independent bilinear interpolation of a geometry_tn field at image pixels (scipy, with the
    NaN edge columns filled row by row by numpy.interp and linear extrapolation at the edges)."""

    def __init__(self, sen3: Path) -> None:
        with xr.open_dataset(sen3 / "geometry_tn.nc", engine="h5netcdf") as tn, \
                xr.open_dataset(sen3 / "flags_an.nc", engine="h5netcdf") as an:
            self.fields = {name: tn[field].values.astype(np.float64) for name, field in FIELDS.items()}
            self.tn_offset, self.an_offset = float(tn.attrs["track_offset"]), float(an.attrs["track_offset"])
            self.tn_res, self.an_res = _resolution(tn.attrs), _resolution(an.attrs)

    @staticmethod
    def _filled(values: np.ndarray) -> np.ndarray:
        out = values.copy()
        cols = np.arange(out.shape[1])
        for row in out:
            ok = np.isfinite(row)
            row[~ok] = np.interp(cols[~ok], cols[ok], row[ok])
        return out

    def at(self, values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        grid = self._filled(values)
        f = RegularGridInterpolator((np.arange(grid.shape[0]), np.arange(grid.shape[1])), grid,
                                    bounds_error=False, fill_value=None)
        i = rows * self.an_res[1] / self.tn_res[1]
        j = self.tn_offset + (cols - self.an_offset) * self.an_res[0] / self.tn_res[0]
        ii, jj = np.meshgrid(i, j, indexing="ij")
        return f(np.stack([ii.ravel(), jj.ravel()], axis=1)).reshape(ii.shape)

    def tile_mean(self, name: str, row: int, col: int, size: int) -> float:
        rows, cols = np.arange(row, row + size, dtype=np.float64), np.arange(col, col + size, dtype=np.float64)
        if name.endswith("azimuth"):  # averaged as a direction: the mean unit vector
            rad = np.deg2rad(self.fields[name])
            s, c = self.at(np.sin(rad), rows, cols).mean(), self.at(np.cos(rad), rows, cols).mean()
            return float(np.rad2deg(np.arctan2(s, c)) % 360.0)
        return float(self.at(self.fields[name], rows, cols).mean())


# --------------------------------------------------------------------------- products, false_color


def test_products_registers_all_nine_bands(chain):
    root, key = chain
    names = {p.name for p in _sen3(root, key).iterdir()}
    for band in RADIANCE_BANDS:
        assert {f"{band}_radiance_an.nc", f"{band}_quality_an.nc"} <= names
    for band in THERMAL_BANDS:
        assert f"{band}_BT_in.nc" in names
    assert set(PIPELINE_FILES) <= names
    assert RADIANCE_BANDS + THERMAL_BANDS == BANDS == false_color.BANDS


def test_bands_equal_reflectance_and_temperature_computed_by_hand(chain):
    root, key = chain
    sen3 = _sen3(root, key)
    data = false_color.read(root, key)
    assert data.bands.dtype == np.float32 and data.bands.shape == (9, *data.valid.shape)
    valid = data.valid.astype(bool)
    rng = np.random.default_rng(0)
    pixels = [tuple(p) for p in rng.choice(np.argwhere(valid), 6, replace=False)]
    tie = _Tie(sen3)

    def values(fname: str, var: str) -> np.ndarray:
        with xr.open_dataset(sen3 / fname, engine="h5netcdf") as ds:  # CF-decoded: scale, offset, fill -> NaN
            return ds[var].values

    detectors = values("indices_an.nc", "detector_an")
    for b, band in enumerate(RADIANCE_BANDS):
        radiance = values(f"{band}_radiance_an.nc", f"{band}_radiance_an")
        e0 = values(f"{band}_quality_an.nc", f"{band}_solar_irradiance_an")
        for r, c in pixels:
            sza = tie.at(tie.fields["solar_zenith"], np.array([r], float), np.array([c], float))[0, 0]
            expected = np.pi * radiance[r, c] * ADJUST[band] / (e0[detectors[r, c]] * np.cos(np.deg2rad(sza)))
            assert data.bands[b, r, c] == pytest.approx(expected, rel=2e-5), (band, r, c)
    for k, band in enumerate(THERMAL_BANDS):
        bt = values(f"{band}_BT_in.nc", f"{band}_BT_in")
        for r, c in pixels:
            assert data.bands[6 + k, r, c] == pytest.approx(float(bt[r // 2, c // 2]), rel=1e-6), (band, r, c)
    # valid = finite in all nine bands; the false colour is still the S1/S3/S5 recipe
    np.testing.assert_array_equal(valid, np.isfinite(data.bands).all(axis=0))
    np.testing.assert_array_equal(data.image, false_colour_of(data.bands[0], data.bands[2], data.bands[4],
                                                              valid=valid))
    summary = data.summary.figures()
    assert summary["bands"] == ",".join(BANDS) and 150 < summary["S8_median_bt_k"] < 330
    assert 0 < summary["S3_median_reflectance"] < 1.5


def test_thermal_bands_repeat_the_1km_grid_2x2_cut_to_the_image(chain):
    root, key = chain
    sen3 = _sen3(root, key)
    bands = false_color.read(root, key).bands
    rows, cols = bands.shape[1:]
    for k, band in enumerate(THERMAL_BANDS):
        with xr.open_dataset(sen3 / f"{band}_BT_in.nc", engine="h5netcdf") as ds:
            coarse = ds[f"{band}_BT_in"].values.astype(np.float32)
        assert coarse.shape == (rows // 2, cols // 2)
        for dr in (0, 1):
            for dc in (0, 1):
                np.testing.assert_allclose(bands[6 + k, dr::2, dc::2], coarse, rtol=1e-6)
    # an image grid with an odd number of rows and columns takes the first 1 km values of each side
    with open_product(sen3) as product:
        with product.open_netcdf("flags_an.nc") as nc:
            grid = grid_attrs(nc.attrs, nc.label)
        odd = brightness_temperature(product, "S9", (rows - 1, cols - 1), image_grid=grid)
    np.testing.assert_array_equal(odd, bands[8, : rows - 1, : cols - 1])


# --------------------------------------------------------------------------- tiles, sorted_tiles


def test_tile_angles_are_the_means_of_the_interpolated_tie_grid(chain):
    root, key = chain
    index = tiles.read(root, key).index
    tie = _Tie(_sen3(root, key))
    nadir = next(r for r in index if r["col"] <= tie.an_offset < r["col"] + TILE)  # view azimuth turns by 180
    for row in (index[0], nadir, index[-1]):
        for name in ANGLE_COLUMNS:
            expected = tie.tile_mean(name, row["row"], row["col"], TILE)
            assert row[name] == pytest.approx(expected, abs=2e-4), (name, row["tile"])
    sza = [r["solar_zenith"] for r in index]
    assert all(0 < v < 90 for v in sza) and all(0 <= r["view_azimuth"] < 360 for r in index)


def test_azimuths_are_averaged_as_directions():
    # one tile spanning two tie rows of 350 and 10 deg: the mean direction is 0, the plain mean 180
    i0, w = np.zeros(4, np.int64), np.array([0.0, 0.25, 0.75, 1.0])
    a, touched = _tile_weights(i0, w, 1, 4, 2)
    np.testing.assert_allclose(a, [[0.5, 0.5]])
    assert touched.all()
    rad = np.deg2rad([350.0, 10.0])
    mean = np.rad2deg(np.arctan2(a @ np.sin(rad), a @ np.cos(rad))) % 360.0
    assert min(mean[0], 360 - mean[0]) < 1e-9


def test_sorted_groups_carry_their_rows_bands_and_flags(chain):
    root, key = chain
    scene = false_color.read(root, key).bands
    flags = masks.read(root, key).flags
    cut = tiles.read(root, key)
    assert cut.bands.shape == (len(cut), 9, TILE, TILE) and cut.flags.dtype == np.uint16
    data = sorted_tiles.read(root, key)
    assert len(data.surface) and len(data.gan_input)
    for name in sorted_tiles.GROUPS:
        group = getattr(data, name)
        assert isinstance(group.bands, np.memmap) and group.bands.shape == (len(group), 9, TILE, TILE)
        assert group.flags.shape == (len(group), TILE, TILE)
        for k, row in enumerate(group.index):
            r, c = row["row"], row["col"]
            np.testing.assert_array_equal(group.bands[k], scene[:, r:r + TILE, c:c + TILE])
            np.testing.assert_array_equal(group.bands[k], cut.bands[row["tile"]])
            np.testing.assert_array_equal(group.flags[k], flags[r:r + TILE, c:c + TILE])
            np.testing.assert_array_equal(group.masks[k], (group.flags[k] & PIXEL_FLAG_BITS["cloud"]) != 0)
    assert np.isfinite(np.asarray(data.surface.bands)).all()  # surfaces are fully valid in all nine bands
    assert ((np.asarray(data.surface.flags) & PIXEL_FLAG_BITS["valid"]) != 0).all()


def test_snow_tiles_can_be_surface_candidates(chain, tmp_path):
    """A clear, valid, daytime tile covered with snow is a surface (it was refused before)."""
    root, key = chain
    shutil.copytree(root / "products", tmp_path / "products")
    cut = tiles.read(root, key)
    clear = next(i for i, r in enumerate(cut.index) if r["cloud_fraction"] == 0 and r["valid_fraction"] == 1
                 and r["day_fraction"] == 1)
    snowy_flags = np.array(cut.flags)
    snowy_flags[clear] |= np.uint16(PIXEL_FLAG_BITS["snow"])
    index = [dict(r) for r in cut.index]
    index[clear]["snow_fraction"] = 1.0
    tiles.write(tmp_path, key, tiles.Tiles(np.array(cut.images), np.array(cut.masks), index,
                                           bands=np.array(cut.bands), flags=snowy_flags))
    sorted_tiles.build(tmp_path, key)
    surface = sorted_tiles.read(tmp_path, key).surface
    k = [r["tile"] for r in surface.index].index(clear)
    assert surface.index[k]["snow_fraction"] == 1.0 and surface.index[k]["surface_candidate"]
    assert ((surface.flags[k] & PIXEL_FLAG_BITS["snow"]) != 0).all()
    pool = surface_tiles.read(tmp_path) if surface_tiles.build(tmp_path, products=[key]).count else None
    assert pool is not None
    row = next(r for r in pool.index if r["source"] == f"{key}:{index[clear]['row']}:{index[clear]['col']}")
    assert row["snow_fraction"] == 1.0 and row["bands_source"] == "product"
    np.testing.assert_array_equal(pool.flags[row["surface"]], surface.flags[k])


# --------------------------------------------------------------------------- surface_tiles


def test_surface_pool_has_the_bands_flags_and_angles_of_products_and_approximates_user_rgb(chain, tmp_path):
    root, key = chain
    shutil.copytree(root / "sorted_tiles", tmp_path / "sorted_tiles")
    user = tmp_path / "user"
    user.mkdir()
    rgb = np.zeros((TILE, 2 * TILE, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 90, 120, 100  # 2R >= G and 2B >= G: the recipe inverts exactly
    rgb[:8, :8] = (20, 200, 30)  # 2R < G: S5 and S1 clip at 0
    Image.fromarray(rgb).save(user / "field.png")
    config = surface_tiles.SurfaceTilesConfig(extra_surface_dir=str(user), tile_size=TILE)
    result = surface_tiles.build(tmp_path, config, products=[key])
    pool = surface_tiles.read(tmp_path)
    surface = sorted_tiles.read(root, key).surface
    n = len(surface)
    assert result.count == len(pool.index) == n + 2 and result.user == 2
    assert pool.bands.shape == (n + 2, 9, TILE, TILE) and pool.flags.shape == (n + 2, TILE, TILE)
    # product tiles: the sorted group's bands, flags and angles
    np.testing.assert_array_equal(pool.bands[:n], surface.bands)
    np.testing.assert_array_equal(pool.flags[:n], surface.flags)
    for row, src in zip(pool.index[:n], surface.index):
        assert row["bands_source"] == "product" and row["snow_fraction"] == src["snow_fraction"]
        assert all(row[c] == src[c] for c in ANGLE_COLUMNS)
    # user tiles: approximated bands, the default temperature and angles, day/valid flags
    user_rows = pool.index[n:]
    assert [r["bands_source"] for r in user_rows] == ["rgb", "rgb"]
    assert all(r["snow_fraction"] is None and r["land_fraction"] is None for r in user_rows)
    assert [(r["solar_zenith"], r["solar_azimuth"], r["view_zenith"], r["view_azimuth"]) for r in user_rows] == [
        (45.0, 135.0, 15.0, 100.0)] * 2
    b = np.asarray(pool.bands[n])
    r_, g_, b_ = (v / 255.0 for v in (90, 120, 100))
    expected = [2 * b_ - g_, (2 * b_ - g_ + g_) / 2, g_, 0.01, 2 * r_ - g_, 0.6 * (2 * r_ - g_), 288.0, 288.0, 288.0]
    np.testing.assert_allclose(b[:, 20, 20], expected, rtol=1e-6)
    np.testing.assert_allclose(b[[0, 4, 5], 0, 0], [0.0, 0.0, 0.0])  # clipped at 0
    image = false_colour_of(b[0], b[2], b[4])
    np.testing.assert_array_equal(image[8:], rgb[8:, :TILE])  # the false colour gives the image back
    assert (np.asarray(pool.flags[n:]) == surface_tiles.USER_FLAGS).all()
    # a warmer surface, set in the config
    warm = surface_tiles.SurfaceTilesConfig(extra_surface_dir=str(user), tile_size=TILE, user_surface_temperature_k=300)
    surface_tiles.build(tmp_path, warm)
    assert (np.asarray(surface_tiles.read(tmp_path).bands[:, 6:]) == 300.0).all()


def test_a_pool_without_bands_is_refused(chain, tmp_path):
    root, key = chain
    shutil.copytree(root / "sorted_tiles", tmp_path / "sorted_tiles")
    (tmp_path / "sorted_tiles" / key / "surface" / "bands.npy").unlink()
    with pytest.raises(Exception, match="no bands/flags .*materialize tiles and sorted_tiles"):
        surface_tiles.build(tmp_path, products=[key])
    surface_tiles.build(tmp_path, products=[])
    (tmp_path / "surface_tiles" / "bands.npy").unlink()
    with pytest.raises(Exception, match="bands.npy is missing .*materialize surface_tiles again"):
        surface_tiles.read(tmp_path)


# --------------------------------------------------------------------------- determinism


def test_same_product_same_bytes(chain, sim_product, tmp_path):
    root, key = chain
    _chain(sim_product, tmp_path)
    for stage in ("false_color", "tiles", "sorted_tiles"):
        first = {p.relative_to(root / stage): p.read_bytes() for p in (root / stage / key).rglob("*") if p.is_file()}
        again = {p.relative_to(tmp_path / stage): p.read_bytes() for p in (tmp_path / stage / key).rglob("*")
                 if p.is_file()}
        assert first == again, stage


# --------------------------------------------------------------------------- bad thermal and angle data


def _edit(folder: Path, fname: str, edit) -> None:
    with h5py.File(folder / fname, "r+") as f:
        edit(f)


def _fill(var):
    def edit(f):
        f[var][...] = f[var].attrs["_FillValue"]
    return edit


def _shape(var):
    def edit(f):
        values, attrs = f[var][:-1], dict(f[var].attrs)
        del f[var]
        f.create_dataset(var, data=values)
        for k, v in attrs.items():
            if k not in ("DIMENSION_LIST", "REFERENCE_LIST"):
                f[var].attrs[k] = v
    return edit


def _attr(name, value):
    def edit(f):
        f.attrs[name] = value
    return edit


def _var_attr(var, name, value):
    def edit(f):
        f[var].attrs[name] = value
    return edit


@pytest.mark.parametrize(("fname", "edit", "message"), [
    ("S8_BT_in.nc", _fill("S8_BT_in"), r"S8_BT_in\.nc: S8_BT_in has no value: fill \(or not finite\) on all 19200"),
    ("S7_BT_in.nc", _shape("S7_BT_in"), r"S7_BT_in\.nc: S7_BT_in is \(119, 160\); the 1 km grid of a 240 x 320 500 m "
                                        r"image must be 120 x 160"),
    ("S9_BT_in.nc", _attr("track_offset", 100), r"S9_BT_in\.nc: the 1 km grid \(track_offset 100, resolution 1000 x "
                                                r"1000 m\) is not the 500 m grid"),
    ("S9_BT_in.nc", _attr("resolution", "[ 500 500 ]"), r"is not the 500 m grid .* at half resolution"),
    ("S8_BT_in.nc", _var_attr("S8_BT_in", "add_offset", -400.0), r"S8_BT_in has \d+ values outside 0-1000 K"),
])
def test_bad_thermal_data_is_a_clear_error(copy_product, fname, edit, message):
    folder = copy_product()
    _edit(folder, fname, edit)
    with open_product(folder) as product, pytest.raises(ProductError, match=message):
        false_color.compute(product)


def test_a_missing_thermal_file_fails_the_registration(copy_product, tmp_path):
    folder = copy_product()
    (folder / "S9_BT_in.nc").unlink()
    with pytest.raises(ProductError, match="missing required file S9_BT_in.nc"):
        products.register(tmp_path / "store", folder)


@pytest.mark.parametrize(("edit", "message"), [
    (_fill("sat_zenith_tn"), r"geometry_tn\.nc: sat_zenith_tn has no finite value \(fill everywhere\)"),
    (_shape("solar_azimuth_tn"), r"geometry_tn\.nc: solar_azimuth_tn is \(119, \d+\); expected 2-D .* like "
                                 r"solar_zenith_tn \(120, \d+\)"),
])
def test_bad_angle_data_is_a_clear_error(copy_product, edit, message):
    folder = copy_product()
    _edit(folder, "geometry_tn.nc", edit)
    with open_product(folder) as product:
        with product.open_netcdf("flags_an.nc") as nc:
            grid = grid_attrs(nc.attrs, nc.label)
        with pytest.raises(ProductError, match=message):
            tile_angles(product, (240, 320), TILE, image_grid=grid)


# --------------------------------------------------------------------------- the real product


@pytest.mark.skipif(not REAL_DIR.is_dir(), reason="the real product (shared/slstr-real) is not here")
def test_real_thermal_bands_and_angles():
    sen3 = next(REAL_DIR.glob("*.SEN3"))
    with open_product(sen3) as product:
        with product.open_netcdf("flags_an.nc") as nc:
            grid = grid_attrs(nc.attrs, nc.label)
            shape = nc.shape("confidence_an")
        assert shape == (2396, 3000)
        bt = brightness_temperature(product, "S8", shape, image_grid=grid)
        angles = tile_angles(product, shape, 256, image_grid=grid)
    finite = np.isfinite(bt)
    assert finite.mean() > 0.9 and 200 < np.nanmedian(bt) < 300  # cold sea ice
    np.testing.assert_array_equal(bt[0::2, 0::2], bt[1::2, 1::2])
    assert len(angles["solar_zenith"]) == 9 * 11
    assert 76 < np.nanmin(angles["solar_zenith"]) and np.nanmax(angles["solar_zenith"]) < 96
    assert np.nanmax(angles["view_zenith"]) < 60
