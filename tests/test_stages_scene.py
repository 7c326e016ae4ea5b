"""The scene stages as modules (products, masks, false_color, tiles, sorted_tiles): typed results,
``read`` giving back what ``build`` wrote, the pipeline's netCDF reader, the solar zenith kept for
the process, one discovery for the sensor and the job, and the generator's batch default."""

from __future__ import annotations

import shutil
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import h5py
import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from cloudgan_assets.jobs import discover_products
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CopernicusResource, DiscoverySettings, TorchDevice
from cloudgan_assets.sensors import cdse_discovery_sensor
from cloudgan_core.cdse.discovery import DiscoveryConfig, cursor_file, load_cursor
from cloudgan_core.cdse.errors import CdseNotFoundError
from cloudgan_core.errors import ProductError
from cloudgan_core.gan.devices import default_batch_size
from cloudgan_core.simulate import product_name
from cloudgan_core.slstr import netcdf
from cloudgan_core.slstr.geometry import solar_zenith
from cloudgan_core.slstr.product import open_product, product_id
from cloudgan_core.stages import false_color, masks, products, sorted_tiles, tiles
from cloudgan_core.stages.base import StageResult
from cloudgan_core.storage import UnsafePathError
from tests.cdse_server import FakeCdse
from tests.dagster_helpers import storage_for

TILE = 64


@pytest.fixture(scope="module")
def chain(sim_product: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    """The five scene stages built once under a storage root: ``(root, key, results)``."""
    root = tmp_path_factory.mktemp("scene")
    key = products.register(root, sim_product).product
    results = {"products": products.read(root, key), "masks": masks.build(root, key),
               "false_color": false_color.build(root, key),
               "tiles": tiles.build(root, key, tiles.TilesConfig(tile_size=TILE)),
               "sorted_tiles": sorted_tiles.build(root, key)}
    return root, key, results


# -- typed results and read() -----------------------------------------------------------------------

def test_every_result_is_a_stage_result_with_figures_and_a_preview(chain):
    root, key, results = chain
    for name in ("masks", "false_color", "tiles", "sorted_tiles"):
        result = results[name]
        assert isinstance(result, StageResult), name
        assert result.path == root / name / key
        figures = result.figures()
        assert figures and all(isinstance(k, str) for k in figures)
        preview = result.preview()
        assert preview is not None and preview.image.dtype in (np.uint8, bool) and preview.caption
    assert results["tiles"].figures()["index"] == root / "tiles" / key / "index.csv"
    assert results["sorted_tiles"].figures()["index"] == root / "sorted_tiles" / key / "index.csv"


def test_read_gives_back_what_build_wrote(chain):
    root, key, results = chain
    stored = masks.read(root, key)
    np.testing.assert_array_equal(stored.flags, results["masks"].data.flags)
    np.testing.assert_array_equal(stored.cloud, results["masks"].data.cloud)
    assert stored.summary == results["masks"].data.summary and isinstance(stored.flags, np.memmap)
    colour = false_color.read(root, key)
    np.testing.assert_array_equal(colour.image, results["false_color"].data.image)
    np.testing.assert_array_equal(colour.valid, results["false_color"].data.valid)
    np.testing.assert_array_equal(colour.bands, results["false_color"].data.bands)
    assert isinstance(colour.bands, np.memmap) and colour.bands.shape == (9, *colour.valid.shape)
    assert colour.summary == results["false_color"].data.summary
    cut = tiles.read(root, key)
    assert cut.index == results["tiles"].tiles.index
    np.testing.assert_array_equal(cut.masks, results["tiles"].tiles.masks)
    np.testing.assert_array_equal(cut.bands, results["tiles"].tiles.bands)
    np.testing.assert_array_equal(cut.flags, results["tiles"].tiles.flags)
    # the contract the dataset stages rely on: index (every row), surface and gan_input (memory-mapped)
    data = sorted_tiles.read(root, key)
    assert len(data.index) == len(cut) and all("bin" in r and "gan_input" in r for r in data.index)
    for group, column in sorted_tiles.GROUPS.items():
        part = getattr(data, group)
        assert isinstance(part.images, np.memmap) and isinstance(part.masks, np.memmap)
        assert [r["tile"] for r in part.index] == [r["tile"] for r in data.index if r[column]]
        for k, row in enumerate(part.index):
            np.testing.assert_array_equal(part.masks[k], cut.masks[row["tile"]])


def test_false_color_writes_the_nine_bands(chain):
    root, key, _ = chain
    assert sorted(p.name for p in false_color.folder(root, key).iterdir()) == [
        "bands.npy", "false_color.json", "false_color.npy", "valid.npy"]
    with pytest.raises(ValidationError, match="save_reflectance"):  # the old setting is gone, not ignored
        false_color.FalseColorConfig(save_reflectance=False)


def test_the_tiles_preview_draws_the_tile_grid(chain):
    _, _, results = chain
    image = results["tiles"].preview().image
    assert (image[0, 0] == (255, 200, 0)).all()  # the grid line at row 0 on the false colour


# -- the masks_plausible thresholds ------------------------------------------------------------------

@pytest.mark.parametrize(("fractions", "of_valid", "problem"), [
    ({"valid": 0.9, "snow": 0.0}, 0.95, "95.0% of valid pixels flagged cloud"),
    ({"valid": 0.4, "snow": 0.0}, 0.5, "only 40.0% of pixels valid for visible imagery"),
    ({"valid": 0.9, "snow": 0.35}, 0.5, "35.0% snow/ice"),
    ({"valid": 0.9, "snow": 0.3}, 0.9, None),  # at the thresholds: plausible
])
def test_masks_plausibility_thresholds(fractions, of_valid, problem):
    summary = masks.MaskSummary(rows=1, columns=1, cloud_source="summary_cloud",
                                flag_fractions={"cloud": 0.4, **fractions}, cloud_fraction_of_valid=of_valid,
                                manifest_cloudy_pixels_percentage=None)
    outcome = masks.plausibility(summary)
    assert outcome.passed is (problem is None)
    assert outcome.description == (problem or "mask looks plausible")
    assert (outcome.cloud_fraction, outcome.valid_fraction) == (0.4, fractions["valid"])


# -- products.build: inbox, download, and what it refuses ---------------------------------------------

def test_products_build_takes_the_inbox_first_then_fetch(sim_zip: Path, tmp_path: Path):
    key = product_id(sim_zip.name)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(sim_zip, mirror / sim_zip.name)
    fetched = []

    def from_mirror(name: str, dest: Path) -> Path:  # a download from a local mirror folder
        fetched.append(name)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(mirror / f"{name}.zip", dest / f"{name}.zip"))

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    result = products.build(tmp_path / "a", key, inbox=inbox, fetch=from_mirror)
    assert result.origin == "CDSE download" and fetched == [key]
    assert not (tmp_path / "a" / "downloads" / sim_zip.name).exists()  # the staging copy is dropped
    shutil.copy(sim_zip, inbox / sim_zip.name)
    again = products.build(tmp_path / "b", key, inbox=inbox, fetch=from_mirror)
    assert again.origin == "inbox" and fetched == [key] and again.figures()["origin"] == "inbox"
    assert products.read(tmp_path / "b", key) == again.path


def test_products_build_refuses_bad_keys_missing_products_and_stray_downloads(sim_zip: Path, tmp_path: Path):
    key = product_id(sim_zip.name)
    with pytest.raises(ValueError, match="not an SL_1_RBT product name"):
        products.build(tmp_path, "../../etc", inbox=tmp_path)
    with pytest.raises(ProductError, match="not found in the inbox .* and no download is configured"):
        products.build(tmp_path, key, inbox=tmp_path)

    def not_found(name: str, dest: Path) -> Path:
        raise CdseNotFoundError(f"no product named {name}")

    with pytest.raises(ProductError, match="and the CDSE download failed: no product named"):
        products.build(tmp_path, key, inbox=tmp_path, fetch=not_found)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stray = Path(shutil.copy(sim_zip, elsewhere / sim_zip.name))
    with pytest.raises(UnsafePathError, match="not .*downloads"):
        products.build(tmp_path, key, inbox=tmp_path, fetch=lambda name, dest: stray)
    assert stray.is_file()  # never removed: it is not in downloads/


# -- the pipeline's netCDF reader ---------------------------------------------------------------------

def test_threaded_inflate_reads_what_hdf5_reads(sim_product: Path):
    with open_product(sim_product) as product:
        for name, var in (("S3_radiance_an.nc", "S3_radiance_an"), ("flags_an.nc", "confidence_an"),
                          ("indices_an.nc", "detector_an"), ("geometry_tn.nc", "solar_zenith_tn")):
            with product.open_netcdf(name, [var]) as nc, h5py.File(sim_product / name) as h5:
                assert h5[var].compression == "gzip"  # the threaded path, not HDF5's
                np.testing.assert_array_equal(nc.read(var), h5[var][()])


def test_unpacking_matches_xarray_and_the_reader_is_bounded(sim_product: Path, monkeypatch):
    with open_product(sim_product) as product, product.open_netcdf("S1_radiance_an.nc") as nc:
        ours = nc.read_unpacked("S1_radiance_an")
        with xr.open_dataset(sim_product / "S1_radiance_an.nc", engine="h5netcdf") as ds:
            theirs = ds["S1_radiance_an"].values
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, equal_nan=True)
        monkeypatch.setattr(netcdf, "MAX_VARIABLE_BYTES", 1000)
        with pytest.raises(ProductError, match=r"S1_radiance_an\.nc: variable 'S1_radiance_an' is .* bytes; more "
                                               r"than the limit of 1000"):
            nc.read("S1_radiance_an")


def test_a_contiguous_variable_is_read_by_hdf5(tmp_path: Path):
    path = tmp_path / "plain.nc"
    values = np.arange(12, dtype=np.int16).reshape(3, 4)
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=values)  # not chunked: no chunks to inflate
        f["v"].attrs["scale_factor"] = 0.5
    nc = netcdf.NetCDF(h5py.File(path), "plain.nc", str(path))
    try:
        np.testing.assert_array_equal(nc.read("v"), values)
        np.testing.assert_array_equal(nc.read_unpacked("v"), values.astype(np.float32) * 0.5)
        with pytest.raises(ProductError, match="variable 'w' missing from plain.nc"):
            nc.read("w")
    finally:
        nc.close()


# -- the solar zenith, interpolated once per product and process -------------------------------------

def test_solar_zenith_is_kept_until_the_geometry_file_changes(copy_product, update_manifest_md5):
    folder = copy_product()
    with open_product(folder) as product:
        first = solar_zenith(product, (240, 320))
        assert solar_zenith(product, (240, 320)) is first  # the masks and false_color stages share it
        with pytest.raises(ValueError, match="read-only"):
            first[0, 0] = 0.0
    with h5py.File(folder / "geometry_tn.nc", "r+") as f:
        f["solar_zenith_tn"][...] = f["solar_zenith_tn"][...] + 1.0  # the file changes in place
    update_manifest_md5(folder, "geometry_tn.nc")
    with open_product(folder) as product:
        second = solar_zenith(product, (240, 320))
    assert second is not first
    np.testing.assert_allclose(second, first + 1.0, atol=1e-4)


# -- configs ------------------------------------------------------------------------------------------

def test_discovery_settings_use_the_cover_fields():
    settings = DiscoverySettings(min_cover=20.0, max_cover=60.0, timeliness="NT")
    assert isinstance(settings, DiscoveryConfig)
    query = settings.query(datetime(2024, 6, 1, tzinfo=timezone.utc))
    assert (query.cloud_cover.min, query.cloud_cover.max) == (20.0, 60.0)
    assert query.end - query.start == timedelta(days=3)
    for bad, text in (({"min_cover": 60.0, "max_cover": 20.0}, "min_cover"), ({"timeliness": "XX"}, "timeliness"),
                      ({"lookback_days": 0}, "lookback_days"), ({"max_products": -1}, "max_products"),
                      ({"cloud_cover_min": 5.0}, "cloud_cover_min")):
        with pytest.raises(ValidationError, match=text):
            DiscoverySettings(**bad)


def test_batch_size_defaults():
    assert default_batch_size("cpu", "bf16") == 1  # measured faster than 2 on 2 cores
    assert default_batch_size("cpu", "fp32") == 2
    assert default_batch_size("cuda:0", "fp16") == default_batch_size("cuda", "fp32") == 16
    assert TorchDevice(device="cpu", precision="bf16").effective_batch_size() == 1
    assert TorchDevice(device="cpu").effective_batch_size() == 2
    assert TorchDevice(device="cpu", precision="bf16", batch_size=3).effective_batch_size() == 3


# -- one discovery for the sensor, the schedule and the job ------------------------------------------

@pytest.mark.slow
def test_the_job_follows_the_sensor_rules_with_its_own_cursor(tmp_path):
    """The job used to add whatever was not a partition: a partition deleted on purpose came back,
    and max_products was not shared with the sensor's plan. Now both run :func:`discover`."""
    now = datetime.now(timezone.utc)
    with FakeCdse(tmp_path / "cdse") as cdse, pytest.MonkeyPatch.context() as mp:
        for k, v in cdse.env().items():
            mp.setenv(k, v)
        names = [product_name(h, "S3B").removesuffix(".SEN3") for h in (5, 10, 20)]
        for h, n in zip((5, 10, 20), names):
            cdse.add_entry(n, now - timedelta(hours=h), cloud_cover=40.0)
        res = {"copernicus": CopernicusResource(), "discovery": DiscoverySettings(max_products=2),
               "storage": storage_for(tmp_path)}
        with dg.instance_for_test() as instance:
            first = discover_products.execute_in_process(instance=instance, resources=res)
            added = first.output_for_node("discover_new_products")
            assert len(added) == 2 and set(added) <= set(names)
            assert sorted(load_cursor(cursor_file(tmp_path / "storage")).added) == sorted(f"{k}.SEN3" for k in added)
            instance.delete_dynamic_partition(products_partitions.name, added[0])  # the user removes one
            second = discover_products.execute_in_process(instance=instance, resources=res)
            assert second.output_for_node("discover_new_products") == [k for k in names if k not in added]
            third = discover_products.execute_in_process(instance=instance, resources=res)
            assert third.output_for_node("discover_new_products") == []
            assert set(instance.get_dynamic_partitions(products_partitions.name)) == set(names) - {added[0]}
            # the sensor, on its own cursor, plans with the same function
            tick = cdse_discovery_sensor(dg.build_sensor_context(instance=instance, resources=res))
            assert [r.partition_key for r in tick.run_requests] == [added[0]]


def test_zip_members_are_read_by_the_pipeline_reader(sim_zip: Path):
    with open_product(sim_zip) as product, product.open_netcdf("flags_an.nc", ["confidence_an"]) as nc:
        assert nc.label == f"{sim_zip}!{sim_zip.name.removesuffix('.zip')}.SEN3/flags_an.nc"
        with zipfile.ZipFile(sim_zip) as zf, h5py.File(zf.open(f"{sim_zip.name.removesuffix('.zip')}.SEN3/flags_an.nc")) as h5:
            np.testing.assert_array_equal(nc.read("confidence_an"), h5["confidence_an"][()])
