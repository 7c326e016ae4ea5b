"""Opening SL_1_RBT products (folder and zip), the manifest, MD5 checks, and the clear errors for
real bad files: each bad file is made here, on disk, from a copy of a simulated product."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.flags import scene_masks
from cloudgan_core.slstr.geometry import solar_zenith
from cloudgan_core.slstr.manifest import MANIFEST_NAME, parse_manifest
from cloudgan_core.slstr.product import MASK_FILES, PIPELINE_FILES, open_product, product_id
from cloudgan_core.slstr.radiance import detector_index, reflectance
from cloudgan_core.stages import false_color, masks, products
from cloudgan_core.stages.products import find_in_inbox, inbox_products


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- opening and the manifest --------------------------------------------------------------------

def test_manifest_fields(sim_product: Path, sim_truth) -> None:
    with open_product(sim_product) as product:
        m = product.manifest
        assert m.product_name == sim_product.name
        assert product.id == sim_product.name.removesuffix(".SEN3") == product_id(sim_product.name)
        assert m.product_type == "SL_1_RBT___"
        assert m.timeliness == "NT"
        assert m.platform == "S3A"
        assert m.start_time.startswith(product.id.split("_")[7][:4])
        valid = ~sim_truth.unfilled
        assert m.cloudy_pixels_percentage == pytest.approx(100 * sim_truth.cloud[valid].mean(), abs=1e-4)
        assert m.footprint_wkt.startswith("POLYGON((") and m.footprint_wkt.endswith("))")
        on_disk = {p.name for p in sim_product.iterdir()} - {MANIFEST_NAME}
        assert set(m.files) == on_disk
        for name, entry in m.files.items():
            assert entry.size == (sim_product / name).stat().st_size
            assert entry.md5 == _md5(sim_product / name)


def test_manifest_not_xml_is_clear() -> None:
    with pytest.raises(ProductError, match=r"some/xfdumanifest\.xml: manifest is not valid XML"):
        parse_manifest(b"<xfdu><unclosed>", "some/xfdumanifest.xml")


def test_zip_and_folder_give_the_same_arrays(sim_product: Path, sim_zip: Path) -> None:
    with open_product(sim_product) as folder, open_product(sim_zip) as zipped:
        assert folder.id == zipped.id
        assert folder.verify(PIPELINE_FILES) == zipped.verify(PIPELINE_FILES)
        mf, mz = scene_masks(folder), scene_masks(zipped)
        np.testing.assert_array_equal(mf.flags, mz.flags)
        sza_f, sza_z = solar_zenith(folder, mf.shape), solar_zenith(zipped, mz.shape)
        np.testing.assert_array_equal(sza_f, sza_z)
        for band in ("S1", "S3", "S5"):
            rf = reflectance(folder, band, sza_f, detectors=detector_index(folder, mf.shape))
            rz = reflectance(zipped, band, sza_z, detectors=detector_index(zipped, mz.shape))
            np.testing.assert_array_equal(rf, rz)
        assert "!" in zipped.describe("flags_an.nc") and zipped.describe("flags_an.nc").endswith("flags_an.nc")


def test_zip_is_read_without_unpacking(sim_zip: Path) -> None:
    before = set(sim_zip.parent.iterdir())
    with open_product(sim_zip) as product:
        scene_masks(product)
    assert set(sim_zip.parent.iterdir()) == before


def test_register_product_from_zip_verifies_and_copies(sim_zip: Path, tmp_path: Path) -> None:
    store = tmp_path / "store" / "products" / product_id(sim_zip.name)
    result = products.register(tmp_path / "store", sim_zip, product_id(sim_zip.name))
    assert result.path == store / (product_id(sim_zip.name) + ".SEN3")
    assert products.read(tmp_path / "store", product_id(sim_zip.name)) == result.path
    # every pipeline file but the manifest (which has no MD5 of its own), plus the optional indices_an.nc
    assert result.figures()["files_verified"] == result.files_verified == len(PIPELINE_FILES) - 1 + 1
    assert (result.path / "indices_an.nc").is_file() and (result.path / MANIFEST_NAME).is_file()
    record = json.loads((store / "product.json").read_text())
    for name, digest in record["md5"].items():
        assert _md5(result.path / name) == digest
    with open_product(result.path) as product:
        product.verify([n for n in record["md5"]])


def test_register_product_wrong_expected_id(sim_product: Path, tmp_path: Path) -> None:
    with pytest.raises(ProductError, match="expected S3B_other"):
        products.register(tmp_path / "store", sim_product, "S3B_other")


# -- bad containers ---------------------------------------------------------------------------

def test_not_a_zip(tmp_path: Path) -> None:
    bad = tmp_path / "S3A_SL_1_RBT____garbage.zip"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ProductError) as err:
        open_product(bad)
    assert str(bad) in str(err.value) and "not a zip" in str(err.value)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ProductError, match="no such file or folder"):
        open_product(tmp_path / "nothing.zip")


@pytest.mark.parametrize("evil", ["../evil", "/abs/evil", "x.SEN3/../../evil"])
def test_zip_entry_escaping_the_folder(sim_product: Path, tmp_path: Path, zip_folder, evil: str) -> None:
    target = zip_folder(sim_product, tmp_path / "evil.zip", {evil: b"owned"})
    assert evil in zipfile.ZipFile(target).namelist()  # the bad entry really is in the file
    with pytest.raises(ProductError) as err:
        open_product(target)
    msg = str(err.value)
    assert str(target) in msg and repr(evil) in msg and "escapes the product folder" in msg
    assert not (tmp_path.parent / "evil").exists()


def test_zip_without_sen3_manifest(tmp_path: Path) -> None:
    target = tmp_path / "empty.zip"
    with zipfile.ZipFile(target, "w") as zf:
        zf.writestr("readme.txt", b"hello")
    with pytest.raises(ProductError, match=r"empty\.zip: zip holds no <name>\.SEN3/xfdumanifest\.xml"):
        open_product(target)


def test_folder_without_manifest(copy_product) -> None:
    folder = copy_product()
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(ProductError, match=f"{folder.name}: missing required file {MANIFEST_NAME}"):
        open_product(folder)


@pytest.mark.parametrize("as_zip", [False, True])
def test_other_product_type(copy_product, zip_folder, tmp_path: Path, as_zip: bool) -> None:
    folder = copy_product()
    manifest = folder / MANIFEST_NAME
    text = manifest.read_text(encoding="utf-8")
    assert "<sentinel3:productType>SL_1_RBT___</sentinel3:productType>" in text
    manifest.write_text(text.replace("SL_1_RBT___</sentinel3:productType>", "SL_2_LST___</sentinel3:productType>"),
                        encoding="utf-8")
    target = zip_folder(folder, tmp_path / "lst.zip") if as_zip else folder
    with pytest.raises(ProductError) as err:
        open_product(target)
    msg = str(err.value)
    assert str(target) in msg and "'SL_2_LST___'" in msg and "SL_1_RBT" in msg


# -- bad files inside a product ------------------------------------------------------------------

def test_missing_required_file(copy_product, tmp_path: Path) -> None:
    folder = copy_product()
    (folder / "S3_radiance_an.nc").unlink()
    store = products.folder(tmp_path / "store", product_id(folder.name))
    with pytest.raises(ProductError) as err:
        products.register(tmp_path / "store", folder)
    assert str(folder) in str(err.value) and "missing required file S3_radiance_an.nc" in str(err.value)
    assert not store.exists() and _leftovers(store.parent) == []
    with open_product(folder) as product:
        sza = solar_zenith(product, (240, 320))
        reflectance(product, "S1", sza)  # S1 is still there
        with pytest.raises(ProductError, match="missing required file S3_radiance_an.nc"):
            reflectance(product, "S3", sza)
    with open_product(folder) as product, pytest.raises(ProductError, match="missing required file S3_radiance_an.nc"):
        false_color.compute(product)


def test_variable_missing_from_file(copy_product) -> None:
    folder = copy_product()
    path = folder / "S1_radiance_an.nc"
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        renamed = ds.rename_vars({"S1_radiance_an": "S1_radiance_xx"}).load()
    path.unlink()
    renamed.to_netcdf(path, engine="h5netcdf")
    with open_product(folder) as product:
        sza = solar_zenith(product, (240, 320))
        with pytest.raises(ProductError) as err:
            reflectance(product, "S1", sza)
    msg = str(err.value)
    assert "'S1_radiance_an'" in msg and "S1_radiance_an.nc" in msg and str(folder) in msg


def test_md5_mismatch(copy_product, tmp_path: Path) -> None:
    folder = copy_product()
    path = folder / "flags_an.nc"
    data = bytearray(path.read_bytes())
    data[-100:-90] = bytes(b ^ 0xFF for b in data[-100:-90])
    path.write_bytes(bytes(data))
    store = products.folder(tmp_path / "store", product_id(folder.name))
    with pytest.raises(ProductError) as err:
        products.register(tmp_path / "store", folder)
    msg = str(err.value)
    assert str(path) in msg and "MD5 mismatch" in msg
    assert not store.exists() and _leftovers(store.parent) == []  # nothing half-registered
    with open_product(folder) as product:
        product.verify(["geometry_tn.nc", "S1_radiance_an.nc"])  # the untouched files still pass
        with pytest.raises(ProductError, match=r"flags_an\.nc: MD5 mismatch: manifest says [0-9a-f]{32}, file has"):
            product.verify(["flags_an.nc"])
    with open_product(folder) as product, pytest.raises(ProductError, match=r"flags_an\.nc: MD5 mismatch"):
        product.verify(MASK_FILES)  # what a caller of masks.compute checks first when the product is not registered


def test_md5_mismatch_inside_zip(copy_product, zip_folder, tmp_path: Path) -> None:
    folder = copy_product()
    path = folder / "geometry_tn.nc"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))
    target = zip_folder(folder, tmp_path / "bad.zip")
    with pytest.raises(ProductError) as err:
        products.register(tmp_path / "store", target)
    assert f"{target}!{folder.name}/geometry_tn.nc" in str(err.value) and "MD5 mismatch" in str(err.value)


def test_file_not_in_manifest(copy_product) -> None:
    folder = copy_product()
    (folder / "extra.nc").write_bytes(b"x")
    with open_product(folder) as product:
        with pytest.raises(ProductError, match=r"extra\.nc: file is not listed in the manifest"):
            product.verify(["extra.nc"])


def test_garbage_netcdf_with_matching_md5(copy_product, update_manifest_md5, tmp_path: Path) -> None:
    folder = copy_product()
    path = folder / "flags_an.nc"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())
    update_manifest_md5(folder, "flags_an.nc")
    with open_product(folder) as product:
        product.verify(["flags_an.nc"])  # checksum is right: the reader must catch it
        with pytest.raises(ProductError) as err:
            scene_masks(product)
    assert str(path) in str(err.value) and "not a readable netCDF file" in str(err.value)
    key = products.register(tmp_path / "store", folder).product  # registering only checks MD5s...
    with pytest.raises(ProductError, match="flags_an.nc: not a readable netCDF file"):
        masks.build(tmp_path / "store", key)  # ...the masks stage fails clearly
    assert not masks.folder(tmp_path / "store", key).exists()


def test_corrupt_data_chunk_with_matching_md5(copy_product, update_manifest_md5) -> None:
    folder = copy_product()
    path = folder / "flags_an.nc"
    with h5py.File(path, "r") as f:
        chunk = f["confidence_an"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    lo = chunk.byte_offset + 2
    data[lo:lo + 64] = bytes(b ^ 0x5A for b in data[lo:lo + 64])  # header intact, compressed data broken
    path.write_bytes(bytes(data))
    update_manifest_md5(folder, "flags_an.nc")
    with open_product(folder) as product:
        with pytest.raises(ProductError) as err:
            scene_masks(product)
    msg = str(err.value)
    assert str(path) in msg and "'confidence_an'" in msg and "corrupt" in msg


def test_inbox_listing(sim_product: Path, sim_zip: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    assert inbox_products(inbox) == []
    inbox.mkdir()
    shutil.copytree(sim_product, inbox / sim_product.name)
    from cloudgan_core.simulate import product_name

    other = product_id(product_name(77, "S3B"))
    shutil.copy(sim_zip, inbox / f"{other}.zip")
    (inbox / "notes.txt").write_text("x")
    (inbox / "S3A_OL_1_EFR____x.zip").write_bytes(b"x")  # not an SLSTR L1 RBT product
    (inbox / "S3B_SL_1_RBT____other.zip").write_bytes(b"x")  # not a product name
    assert inbox_products(inbox) == sorted([product_id(sim_product.name), other])
    assert find_in_inbox(inbox, product_id(sim_product.name)) == inbox / sim_product.name
    assert find_in_inbox(inbox, other) == inbox / f"{other}.zip"
    assert find_in_inbox(inbox, "missing") is None
