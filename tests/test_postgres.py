"""A shared instance on a real PostgreSQL server: deploy/dagster.yaml, as shipped.

The test starts PostgreSQL itself (tests/servers.py), points ``$DAGSTER_HOME/dagster.yaml`` (a copy
of ``deploy/dagster.yaml``) at it through the ``DAGSTER_PG_*`` variables, materializes one
partition through that instance, reads the run and its materializations back with a second
instance (and with plain SQL), then runs the webserver and daemon (``dagster dev``) twice and
checks that a sensor's cursor and a schedule's state survive the restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import requests

from cloudgan_assets.partitions import products_partitions
from cloudgan_core.simulate import product_name
from tests.cdse_server import FakeCdse
from tests.dagster_helpers import SMALL_RUN_CONFIG, make_inbox, tiny_generator
from tests.servers import free_port, postgres_bin_dir, postgres_server
from tests.paths import REPO


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(postgres_bin_dir() is None, reason="PostgreSQL server binaries not installed")]


def _instance_env(pg, home: Path, tmp: Path) -> dict[str, str]:
    return {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_USERNAME": pg.user, "DAGSTER_PG_PASSWORD": pg.password, "DAGSTER_PG_DB": pg.db,
            "CLOUDGAN_STORAGE": str(tmp / "storage"), "CLOUDGAN_INBOX": str(tmp / "inbox")}


def _instigator(instance: dg.DagsterInstance, name: str):
    states = [s for s in instance.all_instigator_state() if s.instigator_name == name]
    return states[0] if states else None


def _dagster_dev(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return proc, url
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"dagster dev did not come up:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """``dagster dev`` ignores SIGTERM for a while: stop its whole process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([str(Path(sys.executable).parent / "dagster"), *args, "-w", "workspace.yaml"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_runs_materializations_and_cursors_live_in_postgres(tmp_path, monkeypatch):
    from cloudgan_assets.definitions import defs

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with postgres_server() as pg, FakeCdse(tmp_path / "cdse") as cdse:
        env = _instance_env(pg, home, tmp_path)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        for k, v in cdse.env().items():
            monkeypatch.setenv(k, v)
        key = make_inbox(tmp_path / "inbox", seeds=(41,))[0]
        run_config = {**SMALL_RUN_CONFIG, "resources": {"generator": {"config": {
            "checkpoint": str(tiny_generator(tmp_path / "g.pth"))}}}}

        # 1. one partition through the Postgres-backed instance
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            instance.add_dynamic_partitions(products_partitions.name, [key])
            result = defs.resolve_job_def("process_product").execute_in_process(
                partition_key=key, instance=instance, run_config=run_config, raise_on_error=False)
            assert result.success
            run_id = result.run_id

        # 2. a second instance (a fresh connection, as another machine would make) reads it back
        with dg.DagsterInstance.from_config(str(home)) as second:
            run = second.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags["dagster/partition"] == key
            for asset in ("products", "masks", "false_color", "tiles", "sorted_tiles", "synthetic_clouds"):
                assert key in second.get_materialized_partitions(dg.AssetKey(asset)), asset
            record = second.fetch_materializations(dg.AssetKey("sorted_tiles"), limit=1).records[0]
            assert record.run_id == run_id and record.partition_key == key
        import psycopg2

        with psycopg2.connect(pg.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchone()[0] == 1
            cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                        "'ASSET_MATERIALIZATION'", (run_id,))
            assert cur.fetchone()[0] == 6

        # 3. sensor cursor and schedule state survive a restart of webserver + daemon
        now = datetime.now(timezone.utc)
        found = product_name(90, "S3B").removesuffix(".SEN3")
        cdse.add_entry(found, now - timedelta(hours=5), cloud_cover=40.0)
        proc_env = {**os.environ, **env, **cdse.env()}
        dev, _ = _dagster_dev(proc_env, tmp_path / "dev.log")
        try:
            _cli(proc_env, "sensor", "start", "cdse_discovery_sensor")
            _cli(proc_env, "schedule", "start", "process_pending_products")
            deadline = time.monotonic() + 120
            cursor = None
            while time.monotonic() < deadline and not cursor:
                time.sleep(1)
                with dg.DagsterInstance.from_config(str(home)) as inst:
                    state = _instigator(inst, "cdse_discovery_sensor")
                    cursor = state.instigator_data.cursor if state and state.instigator_data else None
            assert cursor and found in cursor, (tmp_path / "dev.log").read_text()[-3000:]
        finally:
            _stop(dev)
        dev, url = _dagster_dev(proc_env, tmp_path / "dev.log")
        try:
            with dg.DagsterInstance.from_config(str(home)) as inst:
                sensor = _instigator(inst, "cdse_discovery_sensor")
                schedule = _instigator(inst, "process_pending_products")
                assert sensor.status.value == "RUNNING" and sensor.instigator_data.cursor == cursor
                assert schedule.status.value == "RUNNING"
                assert found in inst.get_dynamic_partitions(products_partitions.name)
            reply = requests.post(f"{url}/graphql", timeout=60, json={"query": """{ sensorOrError(sensorSelector: {
                repositoryLocationName: "cloudgan", repositoryName: "__repository__", sensorName: "cdse_discovery_sensor"})
                { ... on Sensor { sensorState { status ticks(limit: 5) { status cursor } } } } }"""}).json()
            state = reply["data"]["sensorOrError"]["sensorState"]
            assert state["status"] == "RUNNING" and any(t["cursor"] == cursor for t in state["ticks"]), reply
        finally:
            _stop(dev)
