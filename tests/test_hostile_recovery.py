"""Crash recovery, concurrency, full disk and missing inputs, with real processes, real kills and
real Dagster instances (each on its own temporary DAGSTER_HOME).

A product whose inbox entry is a named pipe (FIFO) blocks its run in the ``products`` step (the
zip reader waits for a writer that never comes): a real run that stays STARTED until it is killed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import requests

from cloudgan_assets.assets.scenes import masks as masks_asset
from cloudgan_assets.assets.tiles import tiles as tiles_asset
from cloudgan_assets.demo import INSTANCE_CONFIG, install_instance_config
from cloudgan_assets.guard import WORKER_TAG
from cloudgan_assets.jobs import max_runtime
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage
from cloudgan_assets.schedules import RETRY_TAG, process_pending_products
from cloudgan_core.atomic import (DiskFullError, MissingInputError, atomic_dir, atomic_path, recover_dir,
                                  require_inputs, write_text)
from cloudgan_core.locks import LockHeldError, partition_lock, process_alive
from cloudgan_core.simulate import product_name, simulate_product
from cloudgan_core.slstr.product import product_id
from cloudgan_core.stages import false_color, masks, products
from cloudgan_core.storage import UnsafePathError, asset_dir
from tests.dagster_helpers import SMALL_RUN_CONFIG, failure_text
from tests.paths import REPO

STARTED = dg.DagsterRunStatus.STARTED

#: Runs the whole per-product chain of one partition on the instance of $DAGSTER_HOME.
RUN_PRODUCT = """
import sys, dagster as dg
from cloudgan_assets.definitions import defs
with dg.DagsterInstance.get() as instance:
    defs.resolve_job_def("process_product").execute_in_process(partition_key=sys.argv[1], instance=instance)
"""
#: Holds a partition lock until killed.
HOLD_LOCK = """
import sys, time
from cloudgan_core.locks import partition_lock
with partition_lock(sys.argv[1], sys.argv[2], owner=sys.argv[3]):
    print("locked", flush=True)
    time.sleep(300)
"""
#: Writes a folder (and a file beside it) and is SIGKILLed in the middle: temporaries are left.
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from cloudgan_core.atomic import atomic_dir, atomic_path
final = Path(sys.argv[1])
with atomic_dir(final) as tmp:
    (tmp / "half.npy").write_bytes(b"x" * 100)
    with atomic_path(final.parent / "notes.txt") as t2:
        t2.write_bytes(b"half")
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        print("writing", flush=True)
        os.read(0, 1)  # until stdin closes
"""
#: Swaps in a new version of a folder and is SIGKILLed between the swap's two renames.
KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    if ".old-" in os.fspath(dst):  # final -> old done; old never gets to tmp -> final
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from cloudgan_core.atomic import atomic_dir
with atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "version.txt").write_text("new")
"""


# --------------------------------------------------------------------------- helpers


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "CLOUDGAN_STORAGE": str(tmp_path / "storage"),
            "CLOUDGAN_INBOX": str(tmp_path / "inbox")}


def _python(code: str, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env or os.environ.copy(), cwd=REPO, **kw)


def _dead_pid() -> int:
    proc = _python("pass")
    proc.wait()
    return proc.pid


def _wait(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _blocking_product(inbox: Path, seed: int) -> str:
    """A products partition key whose inbox entry is a FIFO: reading it blocks."""
    key = product_id(product_name(seed))
    inbox.mkdir(parents=True, exist_ok=True)
    os.mkfifo(inbox / f"{key}.zip")
    return key


def _started_run(instance: dg.DagsterInstance, key: str) -> dg.DagsterRun | None:
    """The STARTED run of ``key`` once its first step has recorded its worker."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": key}, statuses=[STARTED]))
    return runs[0] if runs and WORKER_TAG in runs[0].tags else None


def _tick(instance: dg.DagsterInstance):
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(timezone.utc),
                                   resources={"storage": CloudGANStorage()}) as context:
        return process_pending_products(context)


def _real_inputs(root: Path, sim_product: Path) -> str:
    """Register the simulated product and compute its masks and false colour under ``root``."""
    key = products.register(root, sim_product, product_id(sim_product.name)).product
    masks.build(root, key)
    false_color.build(root, key)
    return key


# --------------------------------------------------------------------------- 1. killed runs


@pytest.mark.slow
def test_a_sigkilled_run_is_marked_failed_and_its_partition_retried_at_most_three_times(tmp_path, monkeypatch):
    install_instance_config(tmp_path / "home")
    env = _env(tmp_path)
    for var in ("CLOUDGAN_STORAGE", "CLOUDGAN_INBOX"):
        monkeypatch.setenv(var, env[var])
    key = _blocking_product(tmp_path / "inbox", 71)
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions(products_partitions.name, [key])
        log = open(tmp_path / "worker.log", "w")
        proc = _python(RUN_PRODUCT, key, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            run = _wait(lambda: _started_run(instance, key), 120, "the run to start its first step", proc)
            assert run.tags[WORKER_TAG] == f"{socket.gethostname()}:{proc.pid}"
            # while its worker lives, the run is left alone and its partition is not requested again
            assert isinstance(_tick(instance), dg.SkipReason)
            assert instance.get_run_by_id(run.run_id).status == STARTED
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        assert instance.get_run_by_id(run.run_id).status == STARTED  # what Dagster alone leaves behind

        requests_ = _tick(instance)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        (event,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert f"worker process (pid {proc.pid} on {socket.gethostname()}) is gone" in event.dagster_event.message
        assert [(r.partition_key, r.tags.get(RETRY_TAG)) for r in requests_] == [(key, "1")]

        # from now on the product is broken: each retry fails at once, until the cap
        (tmp_path / "inbox" / f"{key}.zip").unlink()
        (tmp_path / "inbox" / f"{key}.zip").write_bytes(b"not a zip")
        from cloudgan_assets.definitions import defs

        job = defs.resolve_job_def("process_product")
        for attempt in (1, 2, 3):
            (request,) = requests_
            assert request.partition_key == key and request.tags[RETRY_TAG] == str(attempt)
            result = job.execute_in_process(partition_key=key, instance=instance, tags=request.tags,
                                            raise_on_error=False)
            assert not result.success and "not a zip file" in failure_text(result)  # the lock was free again
            requests_ = _tick(instance)
        assert isinstance(requests_, dg.SkipReason) and "failed 4 times" in requests_.skip_message


# --------------------------------------------------------------------------- 2. stale temporaries


def test_a_stage_sweeps_only_the_stale_temporaries_of_its_own_output(tmp_path, sim_product, monkeypatch):
    root = tmp_path / "storage"
    key = products.register(root, sim_product).product
    out = asset_dir(root, "masks", key)
    masks.build(root, key)
    live = _python(KILLED_WRITER, str(out), "live", stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    try:
        assert live.stdout.readline() == b"writing\n"
        killed = _python(KILLED_WRITER, str(out), "kill")  # really SIGKILLed inside both writes
        assert killed.wait(timeout=60) == -signal.SIGKILL
        left = {p.name for p in out.parent.iterdir()} - {key}
        by_pid = {pid: {n for n in left if f"-{pid}-" in n} for pid in (killed.pid, live.pid)}
        dir_temp, file_temp = (next(n for n in by_pid[killed.pid] if n.startswith(f".{name}.tmp-"))
                               for name in (key, "notes.txt"))
        assert len(by_pid[killed.pid]) == len(by_pid[live.pid]) == 2  # a .tmp- folder and a .tmp- file each
        host = re.search(rf"-{killed.pid}-([0-9a-f]{{8}})-", dir_temp)[1]
        dead = _dead_pid()
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "keep.txt").write_text("not the stage's")
        link = f".{key}.tmp-{dead}-{host}-0000abcd"
        (out.parent / link).symlink_to(outside)
        other_host = f".{key}.tmp-{dead}-{'0' if host != '00000000' else '1'}0000000-0000abce"
        legacy = f".{key}.old-{dead}-0000abcf"  # named by the old code: no host
        unrelated = [f".{key}.backup", f"{key}.tmp-{dead}-{host}-0000abd0", f".{key}X.tmp-{dead}-{host}-0000abd1"]
        for name in (other_host, legacy, *unrelated):
            (out.parent / name).mkdir()

        masks.build(root, key)
        names = {p.name for p in out.parent.iterdir()}
        assert dir_temp not in names and link not in names and (outside / "keep.txt").is_file()
        assert file_temp in names  # a temporary of another output (notes.txt) is left to its writer
        assert by_pid[live.pid] <= names  # a live writer's temporaries are safe
        assert {other_host, legacy, *unrelated} <= names  # another machine's: only after some hours
        assert sorted(p.name for p in out.iterdir()) == ["cloud.npy", "flags.npy", "masks.json"]
        write_text(out.parent / "notes.txt", "the next writer of notes.txt")
        assert file_temp not in {p.name for p in out.parent.iterdir()}

        monkeypatch.setenv("CLOUDGAN_STALE_TEMP_HOURS", "0")
        masks.build(root, key)
        names = {p.name for p in out.parent.iterdir()}
        assert other_host not in names and legacy not in names
        assert by_pid[live.pid] <= names and set(unrelated) <= names
    finally:
        live.stdin.close()
        live.wait(timeout=60)
    assert live.returncode == 0 and (out.parent / "notes.txt").read_bytes() == b"half"


def test_process_alive_tells_a_dead_a_zombie_and_a_reused_pid_from_a_live_one():
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
    zombie = _python("pass")
    if Path("/proc").is_dir():
        _wait(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z", 60,
              "the child to exit")
        assert not process_alive(zombie.pid)  # exited, not reaped yet
    zombie.wait()
    assert process_alive(os.getpid(), started_before=time.time())
    if Path("/proc/self/stat").is_file():  # this pid, "seen" ten years ago, was another process then
        assert not process_alive(os.getpid(), started_before=time.time() - 10 * 365 * 86400)


# --------------------------------------------------------------------------- 3. interrupted swaps, missing inputs


def test_a_kill_between_the_two_renames_of_a_swap_is_undone_by_the_next_reader_or_writer(tmp_path):
    final = tmp_path / "false_color" / "KEY"
    final.mkdir(parents=True)
    (final / "version.txt").write_text("old")
    proc = _python(KILLED_BETWEEN_RENAMES, str(final))
    assert proc.wait(timeout=60) == -signal.SIGKILL
    left = sorted(p.name for p in final.parent.iterdir())
    assert not final.exists() and [n.split("-")[0] for n in left] == [".KEY.old", ".KEY.tmp"]

    require_inputs(false_color=final)  # a reader restores the previous complete folder
    assert (final / "version.txt").read_text() == "old"

    # the same through a writer whose block fails: the previous folder is still there afterwards
    shutil.rmtree(final)
    (tmp_path / "false_color" / left[1]).rename(final)  # (the killed writer's temporary stays swept below)
    proc = _python(KILLED_BETWEEN_RENAMES, str(final))
    assert proc.wait(timeout=60) == -signal.SIGKILL and not final.exists()
    with pytest.raises(RuntimeError):
        with atomic_dir(final):
            raise RuntimeError("the stage failed")
    assert (final / "version.txt").read_text() == "new"
    with atomic_dir(final) as tmp:
        (tmp / "version.txt").write_text("newer")
    assert (final / "version.txt").read_text() == "newer"
    assert sorted(p.name for p in final.parent.iterdir()) == ["KEY"]  # everything stale swept


def test_a_swap_in_progress_in_a_live_process_is_waited_for_not_undone(tmp_path):
    final = tmp_path / "masks" / "KEY"
    with atomic_dir(tmp_path / "probe") as probe:  # this process's temporaries are named like this
        own = probe.name.replace(".probe.tmp-", ".KEY.old-")
    final.parent.mkdir()
    (final.parent / own).mkdir()  # this live process is between the two renames of its swap
    t0 = time.monotonic()
    assert not recover_dir(final, wait_s=0.3) and (final.parent / own).is_dir() and not final.exists()
    assert time.monotonic() - t0 >= 0.3
    new = final.parent / own.replace(".old-", ".tmp-")
    new.mkdir()
    finish = threading.Timer(0.3, os.rename, (new, final))  # ... and finishes it
    finish.start()
    require_inputs(masks=final)  # the reader waited for it
    finish.join()
    assert final.is_dir() and (final.parent / own).is_dir()


@pytest.mark.slow
def test_tiles_alone_recovers_an_interrupted_false_color_and_names_a_missing_one(tmp_path, sim_product):
    root = tmp_path / "storage"
    key = _real_inputs(root, sim_product)
    fc = asset_dir(root, "false_color", key)
    expected = np.load(fc / "false_color.npy")
    assert _python(KILLED_BETWEEN_RENAMES, str(fc)).wait(timeout=60) == -signal.SIGKILL
    assert not fc.exists()  # the state the issue found: Dagster shows false_color materialized

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [key])

        def tiles_run():
            return dg.materialize([tiles_asset], partition_key=key, instance=instance, raise_on_error=False,
                                  resources={"storage": CloudGANStorage(root=str(root))}, run_config=SMALL_RUN_CONFIG)

        assert tiles_run().success
        np.testing.assert_array_equal(np.load(fc / "false_color.npy"), expected)
        assert (asset_dir(root, "tiles", key) / "images.npy").is_file()

        shutil.rmtree(fc)
        result = tiles_run()
        assert not result.success
        text = failure_text(result)
        assert f"{fc} does not exist: materialize false_color for {key} first" in text


def test_every_stage_input_names_the_asset_to_materialize(tmp_path):
    from cloudgan_core.stages import (composites, quality_report, sorted_tiles, surface_tiles, synthetic_clouds, tiles,
                                      training_set)

    root, key = tmp_path, "S3A_KEY"
    cases = [
        (lambda: products.read(root, key), "products", key),
        (lambda: masks.build(root, key), "products", key),
        (lambda: false_color.build(root, key), "products", key),
        (lambda: tiles.build(root, key), "false_color", key),
        (lambda: sorted_tiles.build(root, key), "tiles", key),
        (lambda: masks.read(root, key), "masks", key),
        (lambda: sorted_tiles.read(root, key), "sorted_tiles", key),
        (lambda: synthetic_clouds.build(root, key, model=None, model_sha256=""), "sorted_tiles", key),
        (lambda: surface_tiles.build(root, products=[key]), "sorted_tiles", key),
        (lambda: composites.build(root, key), "synthetic_clouds", key),
        (lambda: training_set.build(root, products=[key]), "composites", key),
        (lambda: quality_report.build(root), "training_set", None),
    ]
    for call, asset, partition in cases:
        with pytest.raises(MissingInputError) as err:
            call()
        assert str(err.value).endswith(f"materialize {asset}{f' for {partition}' if partition else ''} first")
        assert isinstance(err.value, FileNotFoundError)
    assert sorted(p.name for p in root.iterdir()) == []  # nothing was written


# --------------------------------------------------------------------------- 4. one run per partition


def test_the_partition_lock_is_held_across_processes_and_freed_by_a_kill(tmp_path):
    root = tmp_path / "storage"
    holder = _python(HOLD_LOCK, str(root), "P1", "run-a", stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(LockHeldError) as err:
            with partition_lock(root, "P1", owner="run-b"):
                pass
        assert (f"another run is writing P1 (lock {root / '_locks' / 'P1.lock'} held by pid {holder.pid} on "
                f"{socket.gethostname()} since") in str(err.value)
        t0 = time.monotonic()
        with pytest.raises(LockHeldError, match="after waiting 0.5 s"):
            with partition_lock(root, "P1", owner="run-b", timeout=0.5):
                pass
        assert time.monotonic() - t0 >= 0.5
        with partition_lock(root, "P1", owner="run-a"):  # another step of the same run
            pass
        with partition_lock(root, "P2", owner="run-b"):  # another partition
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with partition_lock(root, "P1", owner="run-b") as lock:  # the kernel dropped the killed holder's lock
        assert lock == root / "_locks" / "P1.lock"
    assert sorted(p.name for p in (root / "_locks").iterdir()) == ["P1.lock", "P2.lock"]
    for bad in ("../P1", "", "..", "a/b"):
        with pytest.raises(UnsafePathError):
            with partition_lock(root, bad):
                pass


@pytest.mark.slow
def test_an_asset_step_of_a_second_run_fails_while_another_run_writes_its_partition(tmp_path):
    root = tmp_path / "storage"
    key = product_id(product_name(73))
    holder = _python(HOLD_LOCK, str(root), key, "another-run-id", stdout=subprocess.PIPE)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [key])

        def masks_run():
            return dg.materialize([masks_asset], partition_key=key, instance=instance, raise_on_error=False,
                                  resources={"storage": CloudGANStorage(root=str(root))})

        try:
            assert holder.stdout.readline() == b"locked\n"
            result = masks_run()
            assert not result.success
            assert f"another run is writing {key} (lock {root}/_locks/{key}.lock held by pid {holder.pid}" \
                in failure_text(result)
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
        result = masks_run()  # the lock is free: now it fails on its real problem
        assert f"materialize products for {key} first" in failure_text(result)


@pytest.mark.slow
def test_make_ui_instance_queues_a_second_run_of_a_partition_until_the_first_ends(tmp_path):
    install_instance_config(tmp_path / "home")
    env = _env(tmp_path)
    k1, k2 = _blocking_product(tmp_path / "inbox", 81), _blocking_product(tmp_path / "inbox", 82)
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions(products_partitions.name, [k1, k2])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "dev.log", "w")
    dev = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h",
                            "127.0.0.1", "-p", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    workers: set[int] = set()
    try:
        def up():
            try:
                return requests.get(f"{url}/server_info", timeout=2).ok
            except requests.ConnectionError:
                return False

        _wait(up, 180, "the webserver", dev)

        def launch(key: str) -> str:
            reply = requests.post(f"{url}/graphql", timeout=60, json={"query": """
                mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
                    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
                "variables": {"p": {"selector": {"repositoryLocationName": "cloudgan",
                                                 "repositoryName": "__repository__", "jobName": "process_product"},
                                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]}}}})
            body = reply.json()["data"]["launchRun"]
            assert body["__typename"] == "LaunchRunSuccess", body
            return body["run"]["runId"]

        first, second, other = launch(k1), launch(k1), launch(k2)
        with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
            def status(run_id):
                return instance.get_run_by_id(run_id).status

            _wait(lambda: _started_run(instance, k1) and _started_run(instance, k2), 240, "two runs to start", dev)
            time.sleep(12)  # the queue is looked at every 5 s
            assert (status(first), status(second), status(other)) == (STARTED, dg.DagsterRunStatus.QUEUED, STARTED)
            workers = {int(instance.get_run_by_id(r).tags[WORKER_TAG].rpartition(":")[2]) for r in (first, other)}
    finally:
        os.killpg(dev.pid, signal.SIGKILL)  # the webserver, the daemon, the code server
        dev.wait(timeout=30)
        for pid in workers:  # the run workers we launched, if they outlived their parent
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


# --------------------------------------------------------------------------- 5. full disk


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_names_the_output_being_written_and_the_free_space(tmp_path):
    final = tmp_path / "masks" / "KEY"
    with pytest.raises(DiskFullError) as err:
        with atomic_dir(final) as tmp:
            (tmp / "flags.npy").symlink_to("/dev/full")
            (tmp / "flags.npy").write_bytes(b"\0" * 65536)  # the kernel answers ENOSPC
    assert str(err.value).startswith(f"no space left on the device while writing {final} (")
    assert re.search(r"\(\d+(\.\d)? [KMGT]?i?B free there\)", str(err.value))
    assert isinstance(err.value.__cause__, OSError) and err.value.__cause__.errno == errno.ENOSPC
    assert sorted(p.name for p in final.parent.iterdir()) == []
    with pytest.raises(DiskFullError, match=f"while writing {tmp_path / 'f.bin'}"):
        with atomic_path(tmp_path / "f.bin") as tmp:
            tmp.symlink_to("/dev/full")
            tmp.write_bytes(b"\0" * 65536)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]
    assert err.value.about("masks for KEY").args[0].startswith("masks for KEY: no space left on the device")


FULL_TMPFS_RUN = """
import subprocess, sys
from pathlib import Path
import dagster as dg
from cloudgan_assets.assets.ingest import products
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, CopernicusResource
from tests.dagster_helpers import failure_text
small, inbox, key = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
with dg.instance_for_test() as instance:
    instance.add_dynamic_partitions(products_partitions.name, [key])
    result = dg.materialize([products], partition_key=key, instance=instance, raise_on_error=False, resources={
        "storage": CloudGANStorage(root=str(small / "storage"), inbox=inbox), "copernicus": CopernicusResource()})
print("FAILURE:", failure_text(result) if not result.success else "none")
"""


@pytest.mark.slow
def test_a_real_full_file_system_fails_the_products_step_with_its_asset_partition_and_folder(tmp_path):
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (unshare -rm is not allowed)")
    path = simulate_product(tmp_path / "inbox", seed=74, rows=96, cols=128, as_zip=True)
    key = product_id(path.name)
    small = tmp_path / "small"
    small.mkdir()
    proc = subprocess.run(["unshare", "-rm", sys.executable, "-c", FULL_TMPFS_RUN, str(small),
                           str(tmp_path / "inbox"), key], cwd=REPO, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "FAILURE: none" not in out
    assert (f"DiskFullError: products for {key}: no space left on the device while writing "
            f"{small}/storage/products/{key} (") in out, out[-3000:]
    assert "free there)" in out


# --------------------------------------------------------------------------- instance config and job tags


@pytest.mark.slow
def test_make_ui_writes_the_instance_config_once_and_it_loads_with_queue_and_monitoring(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-m", "cloudgan_assets.demo", "--init-home"], cwd=REPO, timeout=120,
                          env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (home / "dagster.yaml").read_text() == INSTANCE_CONFIG.read_text()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().run_queue_config.tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_monitoring_start_timeout_seconds == instance.run_monitoring_cancel_timeout_seconds == 300
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")  # the user's own settings stay
    assert not install_instance_config(home) and "true" in (home / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # what the old demo wrote is upgraded
    assert install_instance_config(home) and (home / "dagster.yaml").read_text() == INSTANCE_CONFIG.read_text()


def test_jobs_carry_a_max_runtime_that_the_environment_can_change(monkeypatch):
    from cloudgan_assets.definitions import defs

    assert defs.resolve_job_def("process_product").tags["dagster/max_runtime"] == "7200"
    assert defs.resolve_job_def("discover_products").tags["dagster/max_runtime"] == "1800"
    monkeypatch.setenv("CLOUDGAN_MAX_RUNTIME_S", "600")
    assert max_runtime(7200) == {"dagster/max_runtime": "600"}
    monkeypatch.setenv("CLOUDGAN_MAX_RUNTIME_S", "2h")
    with pytest.raises(ValueError, match="CLOUDGAN_MAX_RUNTIME_S"):
        max_runtime(7200)
