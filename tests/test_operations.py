"""Operations as a user meets them: the CLI shortcut, the README's placeholder name, the products preview."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from cloudgan_assets import cli
from cloudgan_assets.jobs import PRODUCT_ASSET_NAMES
from cloudgan_assets.partitions import products_partitions
from cloudgan_core.simulate import product_name, simulate_product
from cloudgan_core.slstr.names import PRODUCT_ID_EXAMPLE
from cloudgan_core.slstr.product import product_id
from cloudgan_core.stages.products import quicklook
from tests.dagster_helpers import failure_text

REPO = Path(__file__).resolve().parents[1]
#: The name as the README writes it, with its ``...`` placeholder.
PLACEHOLDER = "S3A_SL_1_RBT____20240612T100000_..._NT_004"


@pytest.mark.parametrize("command", ["add", "run"])
def test_the_readme_placeholder_is_refused_as_not_a_product_name(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert cli.main([command, PLACEHOLDER]) == 2
    err = capsys.readouterr().err
    assert f"'{PLACEHOLDER}' (command line) is not an SL_1_RBT product name" in err
    assert PRODUCT_ID_EXAMPLE in err  # what a name looks like
    assert not (tmp_path / "storage").exists() and not list(tmp_path.iterdir())  # not even an instance


@pytest.mark.slow
def test_a_placeholder_partition_added_in_the_ui_fails_its_run_with_the_same_message(tmp_path, monkeypatch):
    from cloudgan_assets.definitions import defs

    monkeypatch.setenv("CLOUDGAN_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("CLOUDGAN_INBOX", str(tmp_path / "inbox"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, [PLACEHOLDER])  # the UI takes any string
        result = defs.resolve_job_def("process_product").execute_in_process(
            partition_key=PLACEHOLDER, instance=instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert f"'{PLACEHOLDER}' (products partition key) is not an SL_1_RBT product name" in text
    assert PRODUCT_ID_EXAMPLE in text
    assert not (tmp_path / "storage" / "products").exists()


@pytest.mark.slow
def test_cli_run_takes_a_product_through_its_chain_and_fails_a_broken_one(tmp_path, monkeypatch, capsys):
    inbox, storage = tmp_path / "inbox", tmp_path / "storage"
    key = product_id(simulate_product(inbox, seed=31, rows=256, cols=512, cloud_cover=0.4, as_zip=True).name)
    broken = product_id(product_name(32))
    (inbox / f"{broken}.zip").write_bytes(b"not a zip")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLOUDGAN_")}, "PYTHONPATH": str(REPO),
           "DAGSTER_HOME": str(tmp_path / "home"), "CLOUDGAN_STORAGE": str(storage), "CLOUDGAN_INBOX": str(inbox)}
    (tmp_path / "home").mkdir()

    ok = subprocess.run([sys.executable, "-m", "cloudgan_assets.cli", "run", f"{key}.zip"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)  # from a shell, in another folder
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert f"ok: process_product for {key}" in ok.stdout
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run", broken]) == 1
    assert f"FAILED: process_product for {broken}" in capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert sorted(instance.get_dynamic_partitions(products_partitions.name)) == sorted([key, broken])
        for asset in PRODUCT_ASSET_NAMES:
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {key}, asset
        run_record = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": key}))[0]
        assert run_record.dagster_run.run_config["resources"]["storage"]["config"] == {
            "root": str(storage), "inbox": str(inbox)}
        # the products asset shows a quicklook of the product
        preview = instance.get_latest_materialization_event(dg.AssetKey("products")).asset_materialization
        md = preview.metadata["preview"].value
    assert "quicklook" in md
    png = Image.open(io.BytesIO(base64.b64decode(md.split("base64,", 1)[1].rstrip(")"))))
    assert png.size == (256, 128)  # every 2nd pixel of 256 x 512 rows x columns: the longer side <= 480
    assert (storage / "sorted_tiles" / key / "index.csv").is_file()


def test_the_quicklook_is_the_stretched_radiance(tmp_path):
    sen3 = simulate_product(tmp_path, seed=31, rows=96, cols=128)
    image = quicklook(sen3, max_side=64)
    assert image.shape == (48, 64) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255  # 2-98 % stretch
    assert np.array_equal(image, quicklook(sen3, max_side=64))  # deterministic
