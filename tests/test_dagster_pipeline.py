"""Real Dagster runs of the per-product chain on simulated products (temporary instance)."""

from __future__ import annotations

import zipfile

import dagster as dg
import numpy as np
import pytest

from cloudgan_assets.assets import ingest, scenes, tiles
from cloudgan_assets.checks import masks_plausible
from cloudgan_assets.definitions import defs
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.sensors import inbox_sensor
from tests.dagster_helpers import (
    SMALL_RUN_CONFIG,
    failure_text,
    make_inbox,
    resources_for,
    storage_for,
)

ASSETS = [*dg.load_assets_from_modules([ingest, scenes, tiles])]


@pytest.fixture
def setup(tmp_path):
    keys = make_inbox(tmp_path / "inbox")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, keys)
        yield tmp_path, keys, instance


def run(tmp_path, instance, key, **kw):
    return dg.materialize([*ASSETS, masks_plausible], partition_key=key, instance=instance,
                          resources=resources_for(tmp_path), run_config=SMALL_RUN_CONFIG, **kw)


def test_definitions_load_with_every_stage():
    names = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"products", "masks", "false_color", "tiles", "sorted_tiles"} <= names


def test_partition_chain_materializes_with_metadata(setup):
    tmp_path, keys, instance = setup
    result = run(tmp_path, instance, keys[0])
    assert result.success
    mats = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    assert set(mats) == {"products", "masks", "false_color", "tiles", "sorted_tiles"}
    cf = mats["masks"]["cloud_fraction"].value
    assert 0.0 <= cf <= 1.0
    for name in ("masks", "false_color", "tiles", "sorted_tiles"):
        assert "data:image/png;base64," in mats[name]["preview"].value
    root = tmp_path / "storage"
    flags = np.load(root / "masks" / keys[0] / "flags.npy")
    assert flags.shape == (192, 256)
    assert mats["tiles"]["tiles"].value == (192 // 64) * (256 // 64)
    assert (root / "sorted_tiles" / keys[0] / "index.csv").read_text().startswith("tile,product,row,col")
    assert mats["products"]["files_verified"].value == 18  # 17 pipeline files + indices_an.nc (not the manifest)


@pytest.mark.slow
def test_broken_product_fails_its_partition_alone(setup):
    tmp_path, keys, instance = setup
    # corrupt one file inside the second product's zip: its MD5 no longer matches the manifest
    zpath = tmp_path / "inbox" / f"{keys[1]}.zip"
    with zipfile.ZipFile(zpath) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    name = next(n for n in members if n.endswith("flags_an.nc"))
    data = bytearray(members[name])
    data[len(data) // 2] ^= 0xFF
    members[name] = bytes(data)
    with zipfile.ZipFile(zpath, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)

    bad = run(tmp_path, instance, keys[1], raise_on_error=False)
    assert not bad.success
    message = failure_text(bad)
    assert "flags_an.nc" in message and "MD5 mismatch" in message
    assert not (tmp_path / "storage" / "products" / keys[1]).exists()  # nothing half-registered

    good = run(tmp_path, instance, keys[0])
    assert good.success


@pytest.mark.slow
def test_missing_product_in_inbox_is_a_clear_error(setup, monkeypatch):
    from tests.cdse_server import FakeCdse

    tmp_path, keys, instance = setup
    (tmp_path / "inbox" / f"{keys[0]}.zip").unlink()
    with FakeCdse(tmp_path / "cdse") as cdse:  # a catalogue that does not know the product
        for k, v in cdse.env().items():
            monkeypatch.setenv(k, v)
        result = run(tmp_path, instance, keys[0], raise_on_error=False)
    assert "not found in the inbox" in failure_text(result)


@pytest.mark.slow
def test_inbox_sensor_adds_each_product_once(tmp_path):
    keys = make_inbox(tmp_path / "inbox")
    storage = storage_for(tmp_path)
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"storage": storage})
        result = inbox_sensor(ctx)
        assert sorted(r.partition_key for r in result.run_requests) == sorted(keys)
        (add,) = result.dynamic_partitions_requests
        assert sorted(add.partition_keys) == sorted(keys)
        instance.add_dynamic_partitions(products_partitions.name, list(add.partition_keys))
        again = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
        assert not again.run_requests and again.skip_reason
