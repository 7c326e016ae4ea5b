"""Dagster against a real local HTTP server standing in for CDSE: download, CLI, discovery, backfills."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from cloudgan_assets.assets import ingest, scenes, tiles
from cloudgan_assets.jobs import PRODUCT_ASSET_NAMES
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CopernicusResource, DiscoverySettings
from cloudgan_assets.schedules import pending_partitions, process_pending_products
from cloudgan_assets.sensors import cdse_discovery_sensor
from cloudgan_core.simulate import product_name
from tests.cdse_server import FakeCdse
from tests.dagster_helpers import SMALL_RUN_CONFIG, storage_for

#: real Dagster runs (materialize, the CLI) against the local CDSE server
pytestmark = pytest.mark.slow

ASSETS = [*dg.load_assets_from_modules([ingest, scenes, tiles])]


@pytest.fixture
def cdse(tmp_path, monkeypatch):
    with FakeCdse(tmp_path / "cdse") as server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        yield server


def resources(tmp_path, **cop):
    return {"storage": storage_for(tmp_path), "copernicus": CopernicusResource(**cop)}


def test_products_downloads_when_not_in_inbox_and_chain_runs(tmp_path, cdse):
    product = cdse.add_simulated(seed=31, rows=192, cols=256)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [product.key])
        result = dg.materialize(ASSETS, partition_key=product.key, instance=instance,
                                resources=resources(tmp_path), run_config=SMALL_RUN_CONFIG)
    assert result.success
    md = result.asset_materializations_for_node("products")[0].metadata
    assert md["origin"].value == "CDSE download"
    stored = tmp_path / "storage" / "products" / product.key / f"{product.key}.SEN3"
    assert (stored / "S3_radiance_an.nc").is_file()
    assert not list((tmp_path / "storage").rglob("*.part"))
    # the bearer token followed the redirect to the mirror (second port)
    mirror = [s for s in cdse.seen if s.server == "mirror"]
    assert mirror and all(s.authorization and s.authorization.startswith("Bearer ") for s in mirror)


def test_wrong_password_is_a_clear_error_without_the_secret(tmp_path, cdse, monkeypatch):
    product = cdse.add_simulated(seed=32)
    monkeypatch.setenv("CDSE_PASSWORD", "wrong-secret-pw-123")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [product.key])
        result = dg.materialize(ASSETS, partition_key=product.key, instance=instance, resources=resources(tmp_path),
                                selection=["products"], raise_on_error=False)
        assert not result.success
        logs = "\n".join(str(e.message) + str(e.dagster_event and e.dagster_event.event_specific_data)
                         for e in instance.all_logs(result.run_id))
    assert "rejected the username/password" in logs
    assert "wrong-secret-pw-123" not in logs


def test_offline_product_is_a_clear_error(tmp_path, cdse):
    product = cdse.add_simulated(seed=33, online=False)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [product.key])
        result = dg.materialize(ASSETS, partition_key=product.key, instance=instance, resources=resources(tmp_path),
                                selection=["products"], raise_on_error=False)
        logs = "\n".join(str(e.dagster_event and e.dagster_event.event_specific_data) for e in instance.all_logs(result.run_id))
    assert not result.success and "offline" in logs.lower()


def test_cli_materializes_one_partition_from_the_test_server(tmp_path, cdse):
    product = cdse.add_simulated(seed=34, rows=512, cols=512)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, **cdse.env(), "DAGSTER_HOME": str(home), "CLOUDGAN_STORAGE": str(tmp_path / "storage"),
           "CLOUDGAN_INBOX": str(tmp_path / "empty_inbox")}
    bin_dir = os.path.dirname(sys.executable)
    subprocess.run([f"{bin_dir}/dagster", "instance", "info"], env=env, check=True, capture_output=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(products_partitions.name, [product.key])
    proc = subprocess.run(
        [f"{bin_dir}/dagster", "asset", "materialize", "-m", "cloudgan_assets.definitions",
         "--select", ",".join(PRODUCT_ASSET_NAMES), "--partition", product.key],
        env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr
    index = tmp_path / "storage" / "sorted_tiles" / product.key / "index.csv"
    assert len(index.read_text().splitlines()) == 1 + 4  # 2 x 2 tiles of 256 px
    assert cdse.env()["CDSE_PASSWORD"] not in proc.stderr + proc.stdout


def test_discovery_sensor_adds_new_products_once_and_caps_per_tick(tmp_path, cdse):
    now = datetime.now(timezone.utc)
    names = [product_name(h, "S3B").removesuffix(".SEN3") for h in (5, 10, 20)]
    for h, n in zip((5, 10, 20), names):
        cdse.add_entry(n, now - timedelta(hours=h), cloud_cover=40.0)
    cdse.add_entry(product_name(3, "S3B"), now - timedelta(hours=3), cloud_cover=2.0)  # too clear
    res = {"copernicus": CopernicusResource(), "discovery": DiscoverySettings(max_products=2),
           "storage": storage_for(tmp_path)}
    with dg.instance_for_test() as instance:
        first = cdse_discovery_sensor(dg.build_sensor_context(instance=instance, resources=res))
        added = [r.partition_key for r in first.run_requests]
        assert len(added) == 2 and set(added) <= set(names)
        instance.add_dynamic_partitions(products_partitions.name, added)
        second = cdse_discovery_sensor(dg.build_sensor_context(instance=instance, resources=res, cursor=first.cursor))
        third_keys = [r.partition_key for r in second.run_requests]
        assert len(third_keys) == 1 and third_keys[0] not in added
        instance.add_dynamic_partitions(products_partitions.name, third_keys)
        # a restart: same cursor, nothing new
        again = cdse_discovery_sensor(dg.build_sensor_context(instance=instance, resources=res, cursor=second.cursor))
        assert not again.run_requests
    assert sorted(added + third_keys) == sorted(names)


def test_backfill_schedule_requests_only_pending_partitions(tmp_path):
    from cloudgan_assets.assets import clouds
    from cloudgan_assets.resources import GeneratorModel, TorchDevice
    from tests.dagster_helpers import make_inbox, tiny_generator

    keys = make_inbox(tmp_path / "inbox")
    chain = [*ASSETS, *dg.load_assets_from_modules([clouds])]
    res = {**resources(tmp_path), "torch_device": TorchDevice(device="cpu"),
           "generator": GeneratorModel(checkpoint=str(tiny_generator(tmp_path / "g.pth")))}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, keys)
        assert sorted(pending_partitions(instance)) == sorted(keys)
        assert dg.materialize(chain, partition_key=keys[0], instance=instance, resources=res,
                              selection=list(PRODUCT_ASSET_NAMES), run_config=SMALL_RUN_CONFIG).success
        assert pending_partitions(instance) == [keys[1]]
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 1, 1, 2),
                                       resources={"storage": storage_for(tmp_path)}) as ctx:
            requests = process_pending_products(ctx)
        assert [r.partition_key for r in requests] == [keys[1]]
