"""Declarative automation (cloudgan_assets/automation.py) and the storage config carried by sensors and schedules.

The conditions are evaluated tick by tick with ``dg.evaluate_automation_conditions`` against a real
instance, and end to end by the real daemon: ``dagster dev -w workspace.yaml`` (webserver + daemon,
as ``make ui`` runs it) with the shipped instance config, a simulated product in the inbox, the
sensors turned on through the webserver, and a wait for the ``training_set`` materialization that
includes it. Every process it started is stopped (its process group).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from cloudgan_assets.automation import SENSOR_NAME, periodic_refresh, refresh_cron
from cloudgan_assets.jobs import PRODUCT_ASSET_NAMES
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_core.simulate import product_name, simulate_product
from cloudgan_core.slstr.product import product_id
from tests.servers import free_port, group_alive

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CROSS = ("surface_tiles", "composites", "training_set", "quality_report")
A, B = (product_id(product_name(seed)) for seed in (11, 31))


# --------------------------------------------------------------------------- the refresh window


@pytest.mark.parametrize(("minutes", "cron"), [(1, "*/1 * * * *"), (15, "*/15 * * * *"), (60, "0 * * * *"),
                                               (180, "0 */3 * * *"), (1440, "0 0 * * *")])
def test_refresh_minutes_become_clock_aligned_windows(minutes, cron):
    assert refresh_cron(minutes) == cron


@pytest.mark.parametrize("minutes", [0, 7, 90, 300, 2880])
def test_refresh_minutes_that_do_not_tile_the_clock_are_refused(minutes):
    with pytest.raises(ValueError, match="must divide an hour"):
        refresh_cron(minutes)


def test_a_bad_refresh_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("CLOUDGAN_REFRESH_MINUTES", "hourly")
    with pytest.raises(ValueError, match="CLOUDGAN_REFRESH_MINUTES='hourly'"):
        periodic_refresh()


# --------------------------------------------------------------------------- the conditions, tick by tick


class Ticks:
    """Materializations reported to a real instance, and the automation sensor's view of them."""

    def __init__(self, instance: dg.DagsterInstance, start: dt.datetime):
        from cloudgan_assets.definitions import defs

        self.defs, self.instance, self.start, self.cursor = defs, instance, start, None

    def done(self, *assets: str, partition: str | None = None) -> None:
        for asset in assets:
            self.instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition))

    def tick(self, minutes: float) -> dict[str, list[str | None]]:
        """Requested partitions per cross-product asset at ``start + minutes``."""
        result = dg.evaluate_automation_conditions(
            self.defs, self.instance, asset_selection=dg.AssetSelection.assets(*CROSS), cursor=self.cursor,
            evaluation_time=self.start + dt.timedelta(minutes=minutes))
        self.cursor = result.cursor
        requested = {}
        for asset in CROSS:
            if result.get_num_requested(dg.AssetKey(asset)):
                requested[asset] = (sorted(result.get_requested_partitions(dg.AssetKey(asset)))
                                    if asset == "composites" else [None])
        return requested


@pytest.mark.slow
def test_a_new_product_flows_on_and_the_cross_product_assets_refresh_once_per_window(monkeypatch):
    monkeypatch.delenv("CLOUDGAN_REFRESH_MINUTES", raising=False)  # the default: 60-minute windows
    with dg.DagsterInstance.ephemeral() as instance:  # in memory: each tick reads the partitions many times
        instance.add_dynamic_partitions(products_partitions.name, [A])
        t = Ticks(instance, dt.datetime(2026, 1, 1, 10, 5, tzinfo=dt.timezone.utc))
        t.done(*PRODUCT_ASSET_NAMES, partition=A)
        t.done("surface_tiles")
        t.done("composites", partition=A)
        t.done("training_set", "quality_report")
        assert t.tick(0) == {}  # turning the sensor on requests nothing that is up to date
        instance.add_dynamic_partitions(products_partitions.name, [B])
        assert t.tick(1) == {}  # a new partition waits for its synthetic clouds
        t.done(*PRODUCT_ASSET_NAMES, partition=B)
        assert t.tick(2) == {"surface_tiles": [None], "composites": [B]}
        t.done("surface_tiles")
        assert t.tick(3) == {}  # a new surface pool does not rebuild every product's composites
        t.done("composites", partition=B)
        assert t.tick(4) == {"training_set": [None], "quality_report": [None]}  # one run, in order
        t.done("training_set", "quality_report")
        assert t.tick(5) == {}
        # another product in the same window: its composites at once, the refreshes in the next window
        t.done("sorted_tiles", "synthetic_clouds", partition=A)
        assert t.tick(6) == {"composites": [A]}
        t.done("composites", partition=A)
        assert t.tick(7) == {}
        assert t.tick(54) == {}  # 10:59
        assert t.tick(56) == {"surface_tiles": [None], "training_set": [None], "quality_report": [None]}  # 11:01
        assert t.tick(57) == {}


# --------------------------------------------------------------------------- storage in run requests


@pytest.mark.slow
def test_sensors_and_schedules_carry_the_absolute_storage_in_the_run_config(tmp_path, monkeypatch):
    from cloudgan_assets.schedules import discover_daily, process_pending_products
    from cloudgan_assets.sensors import inbox_sensor

    monkeypatch.chdir(tmp_path)
    storage = CloudGANStorage(root="rel/storage", inbox="rel/inbox")  # relative: resolved where the run is made
    expected = {"resources": {"storage": {"config": {"root": str(tmp_path / "rel" / "storage"),
                                                     "inbox": str(tmp_path / "rel" / "inbox")}}}}
    simulate_product(tmp_path / "rel" / "inbox", seed=31, rows=64, cols=64, as_zip=True)
    with dg.instance_for_test() as instance:
        tick = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
        assert [r.partition_key for r in tick.run_requests] == [B]
        assert tick.run_requests[0].run_config == expected
        instance.add_dynamic_partitions(products_partitions.name, [B])
        with dg.build_schedule_context(instance=instance, resources={"storage": storage},
                                       scheduled_execution_time=dt.datetime(2026, 1, 1, 2)) as context:
            requests = process_pending_products(context)
            assert [r.partition_key for r in requests] == [B] and requests[0].run_config == expected
        with dg.build_schedule_context(instance=instance, resources={"storage": storage},
                                       scheduled_execution_time=dt.datetime(2026, 1, 1, 5)) as context:
            assert discover_daily(context).run_config == expected


# --------------------------------------------------------------------------- end to end, with the daemon


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop ``dagster dev`` and everything it started (webserver, daemon, code server, run workers): its
    process group."""
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 15)):  # SIGINT: what Ctrl-C sends
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:  # the children may outlive the daemon for a moment
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.mark.slow
def test_dagster_dev_takes_a_new_inbox_product_to_the_training_set(tmp_path):
    started = time.monotonic()
    home, storage, inbox = tmp_path / "home", tmp_path / "storage", tmp_path / "inbox"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")  # as `make ui` installs it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDGAN_", "CDSE_"))}
    env.update({"DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO), "CLOUDGAN_STORAGE": str(storage),
                "CLOUDGAN_INBOX": str(inbox), "CLOUDGAN_REFRESH_MINUTES": "1", "CLOUDGAN_AUTOMATION_INTERVAL_S": "5",
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})

    # A product in the inbox (one surface tile and 12 generator inputs of 256 px: the tile size the
    # automation's runs use); the webserver and daemon (`dagster dev`, as `make ui` runs it) started,
    # and the sensors turned on through the webserver's GraphQL API, as the UI does.
    new = product_id(simulate_product(inbox, seed=43, rows=768, cols=1536, cloud_cover=0.45, land_fraction=0.15,
                                      as_zip=True).name)
    log = tmp_path / "dev.log"
    port = free_port()
    dev = subprocess.Popen([str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                           cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        for name in ("inbox_sensor", SENSOR_NAME):
            assert _start_sensor(url, name, dev, log) == "RUNNING"
        sensors_on = time.monotonic()
        deadline = time.monotonic() + 150
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while True:
                assert dev.poll() is None, log.read_text()[-3000:]
                failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
                assert not failed, [_failure(instance, r.run_id) for r in failed]
                record = instance.get_latest_materialization_event(dg.AssetKey("training_set"))
                if record is not None:
                    run = instance.get_run_by_id(record.run_id)
                    if run.is_finished:
                        break
                assert time.monotonic() < deadline, _progress(instance) + log.read_text()[-3000:]
                time.sleep(1)
            flowed = time.monotonic()
            runs = {r.run_id: r for r in instance.get_runs()}
            chain = [r for r in runs.values() if r.tags.get("dagster/partition") == new]
    finally:
        _stop_group(dev)
    assert not group_alive(dev.pid), "dagster dev or one of its children is still running"

    assert run.status == dg.DagsterRunStatus.SUCCESS
    # the training set holds the new product's pairs
    manifest = [json.loads(line) for line in (storage / "training_set" / "manifest.jsonl").read_text().splitlines()]
    assert {row["product"] for row in manifest} == {new} and len(manifest) == 12
    # the new product's chain came from the inbox sensor, with the storage in its run config
    by_sensor = {}
    for r in chain:
        by_sensor.setdefault(r.tags.get("dagster/sensor_name"), []).append(r)
    assert [r.job_name for r in by_sensor["inbox_sensor"]] == ["process_product"]
    assert by_sensor["inbox_sensor"][0].run_config["resources"]["storage"]["config"] == {
        "root": str(storage), "inbox": str(inbox)}
    assert [sorted(k.to_user_string() for k in r.asset_selection) for r in by_sensor[SENSOR_NAME]] == [["composites"]]
    # the cross-product assets: one refresh each, by the automation sensor
    automated = [sorted(k.to_user_string() for k in r.asset_selection or [])
                 for r in runs.values() if r.tags.get("dagster/sensor_name") == SENSOR_NAME
                 and "dagster/partition" not in r.tags]
    assert sorted(automated) == [["quality_report", "training_set"], ["surface_tiles"]]
    assert all(r.tags.get("dagster/max_runtime") for r in runs.values())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("quality_report")).run_id == run.run_id
    print(f"\nautomation: sensors on after {sensors_on - started:.1f} s, inbox -> training_set after "
          f"{flowed - started:.1f} s ({len(runs)} runs); whole test {time.monotonic() - started:.1f} s")


def _start_sensor(url: str, name: str, dev: subprocess.Popen, log: Path) -> str:
    """Turn a sensor on through the webserver (waiting for it to serve the code location); its new status."""
    query = ("mutation { startSensor(sensorSelector: {repositoryLocationName: \"cloudgan\", repositoryName: "
             f'"__repository__", sensorName: "{name}"}}) {{ __typename ... on Sensor {{ sensorState {{ status }} }} '
             "... on PythonError { message } } }")
    deadline = time.monotonic() + 120
    while True:
        assert dev.poll() is None, log.read_text()[-3000:]
        try:
            answer = requests.post(url, json={"query": query}, timeout=30).json()["data"]["startSensor"]
            if answer["__typename"] == "Sensor":
                return answer["sensorState"]["status"]
        except (requests.ConnectionError, KeyError, TypeError):
            answer = None
        assert time.monotonic() < deadline, (answer, log.read_text()[-3000:])
        time.sleep(0.5)


def _failure(instance: dg.DagsterInstance, run_id: str) -> str:
    parts = []
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        err = event.dagster_event.event_specific_data.error
        while err is not None:
            parts.append(err.message.strip()[:800])
            err = err.cause
    return "\n".join(parts) or run_id


def _progress(instance: dg.DagsterInstance) -> str:
    return "\n".join(f"{r.job_name} {r.tags.get('dagster/partition', '')[-12:]} {r.status.value} "
                     f"{sorted(k.to_user_string() for k in r.asset_selection or [])}"
                     for r in instance.get_runs()) + "\n"
