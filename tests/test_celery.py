"""process_product on Celery workers with a GPU queue, through a real Redis broker.

The test starts a real ``redis-server`` (tests/servers.py) and two real Celery workers with
``dagster-celery worker start``: ``cpu@<host>`` on the default queue ``dagster`` and ``gpu@<host>``
on ``gpu``. It runs ``process_product`` for two small simulated partitions with the Celery executor
(``CLOUDGAN_EXECUTOR=celery``), the storage root and inbox travelling in the run config, then
checks where every step ran and that the outputs equal those of the in-process executor byte for
byte. The workers get a decoy ``$CLOUDGAN_STORAGE`` and another working folder, so a worker that
resolved the storage itself would write elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from cloudgan_assets.partitions import products_partitions
from tests.dagster_helpers import SMALL_RUN_CONFIG, make_inbox, tiny_generator
from tests.servers import redis_binary, redis_server
from tests.paths import REPO

BIN = Path(sys.executable).parent
CHAIN = ("products", "masks", "false_color", "tiles", "sorted_tiles", "synthetic_clouds")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(redis_binary() is None, reason="no redis-server binary")]

LAUNCH = """
import sys, json
import dagster as dg
from cloudgan_assets.definitions import process_product_job
key, run_config = sys.argv[1], json.loads(sys.argv[2])
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(dg.reconstructable(process_product_job), instance=instance, run_config=run_config,
                            tags={"dagster/partition": key}, raise_on_error=False)
    with result:
        print(result.run_id)
        sys.exit(0 if result.success else 1)
"""


def _worker(name: str, queue: str, config: Path, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y",
                             str(config), "-q", queue, "-n", name, "-l", "WARNING", "--", "--concurrency=2",
                             "--without-gossip", "--without-mingle", "--without-heartbeat"],
                            env=env, cwd=cwd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != "_locks"}


def test_steps_run_on_their_queues_and_outputs_match_in_process(tmp_path):
    started = time.monotonic()
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    home.mkdir()
    keys = make_inbox(inbox, seeds=(61, 62))
    generator = tiny_generator(tmp_path / "g.pth")
    resources = {"generator": {"config": {"checkpoint": str(generator)}},
                 "torch_device": {"config": {"device": "cpu"}}}

    def run_config(storage: Path) -> dict:
        return {**SMALL_RUN_CONFIG, "resources": {**resources, "storage": {"config": {
            "root": str(storage), "inbox": str(inbox)}}}}

    base = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDGAN_")}
    base.update({"DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO),
                 "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})  # dagster-celery starts `celery`
    with redis_server() as redis:
        config = tmp_path / "celery.yaml"
        config.write_text(f"execution:\n  config:\n    broker: {redis.url}\n    backend: {redis.url}\n")
        decoy = tmp_path / "decoy"
        worker_env = {**base, "CLOUDGAN_STORAGE": str(decoy), "CLOUDGAN_INBOX": str(decoy / "inbox")}
        elsewhere = tmp_path / "worker-cwd"
        elsewhere.mkdir()
        # the instance's databases are created here, once, before any worker or launcher opens them
        # (two processes creating a fresh SQLite instance at once race on its schema table)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(products_partitions.name, keys)
        workers = [_worker("cpu", "dagster", config, worker_env, elsewhere, tmp_path / "cpu.log"),
                   _worker("gpu", "gpu", config, worker_env, elsewhere, tmp_path / "gpu.log")]
        try:
            launch_env = {**base, "CLOUDGAN_EXECUTOR": "celery", "CLOUDGAN_CELERY_BROKER": redis.url}
            import json

            runs = [subprocess.Popen([sys.executable, "-c", LAUNCH, key, json.dumps(run_config(tmp_path / "storage"))],
                                     env=launch_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for key in keys]
            deadline = time.monotonic() + 240
            while any(r.poll() is None for r in runs) and time.monotonic() < deadline:
                dead = [w for w in workers if w.poll() is not None]
                assert not dead, [(tmp_path / f"{n}.log").read_text()[-3000:] for n in ("cpu", "gpu")]
                time.sleep(0.5)
            outs = [r.communicate(timeout=10) for r in runs]
            for r, (out, err) in zip(runs, outs):
                assert r.returncode == 0, (err[-4000:], (tmp_path / "cpu.log").read_text()[-2000:],
                                           (tmp_path / "gpu.log").read_text()[-2000:])
            run_ids = [out.strip().splitlines()[-1] for out, _ in outs]
        finally:
            for w in workers:
                _stop(w)
    celery_seconds = time.monotonic() - started

    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key, run_id in zip(keys, run_ids):
            # every step of the run, from the executor's own record of which worker took it
            placed = {}
            for record in instance.all_logs(run_id):
                event = record.dagster_event
                if event is None or event.event_type_value != "ENGINE_EVENT" or not event.step_key:
                    continue
                md = event.event_specific_data.metadata
                if "Celery worker" in md:
                    placed[event.step_key] = md["Celery worker"].value
            steps = set(CHAIN) | {"masks_masks_plausible"}
            assert set(placed) == steps, placed
            for step, worker in placed.items():
                assert worker.startswith("gpu@" if step == "synthetic_clouds" else "cpu@"), (step, worker)
            # and from the materializations' own metadata (host, pid, worker)
            for asset in CHAIN:
                rec = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1).records[0]
                md = rec.asset_materialization.metadata
                assert rec.run_id == run_id
                assert md["worker"].value.startswith("gpu@" if asset == "synthetic_clouds" else "cpu@")
                assert md["host"].value and md["pid"].value > 0
    assert not decoy.exists()  # nothing was written where a worker alone would have looked

    # the same partitions with the in-process executor, into another storage root
    from cloudgan_assets.definitions import defs

    job = defs.resolve_job_def("process_product")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key in keys:
            result = job.execute_in_process(partition_key=key, instance=instance,
                                            run_config=run_config(tmp_path / "reference"), raise_on_error=False)
            assert result.success
    celery_files, reference = _files(tmp_path / "storage"), _files(tmp_path / "reference")
    assert sorted(celery_files) == sorted(reference)
    differ = [name for name in reference if celery_files[name] != reference[name]]
    assert not differ, differ
    print(f"\ncelery run of 2 partitions: {celery_seconds:.1f} s (workers, broker and both runs)")
