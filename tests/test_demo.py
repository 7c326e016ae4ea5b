"""The demo end to end (what `make demo` runs), in a temporary storage root and Dagster home."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from cloudgan_assets.cli import main as cli_main


@pytest.mark.slow
def test_demo_ends_with_a_training_set_whose_images_and_masks_pair_up(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "CLOUDGAN_STORAGE": str(tmp_path / "storage"),
           "CLOUDGAN_INBOX": str(tmp_path / "inbox")}
    proc = subprocess.run([sys.executable, "-m", "cloudgan_assets.demo"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout
    ts = tmp_path / "storage" / "training_set"
    images = sorted(p.name for p in (ts / "images").glob("*.png"))
    masks = sorted(p.name for p in (ts / "masks").glob("*.png"))
    assert images and images == masks == sorted(p.name for p in (ts / "surface").glob("*.png"))
    with zipfile.ZipFile(ts / "training_set.zip") as zf:
        names = set(zf.namelist())
    assert {f"images/{n}" for n in images} <= names and {f"masks/{n}" for n in masks} <= names
    for name in images[:5]:
        img = np.asarray(Image.open(ts / "images" / name).convert("RGB"))
        surf = np.asarray(Image.open(ts / "surface" / name).convert("RGB"))
        mask = np.asarray(Image.open(ts / "masks" / name))
        assert set(np.unique(mask)) <= {0, 255}
        shadow = np.asarray(Image.open(ts / "shadows" / name))
        clear = (mask == 0) & (shadow == 0)
        assert clear.any() and (img[clear] == surf[clear]).all()  # exact masks: outside cloud ∪ shadow, the surface
        assert (img[mask == 255] != surf[mask == 255]).any(axis=-1).mean() > 0.95


def test_cli_adds_and_lists_product_partitions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    key = "S3A_SL_1_RBT____20240612T100000_20240612T100300_20240612T120000_0179_111_011_1833_PS1_O_NT_004"
    assert cli_main(["add", f"{key}.SEN3", key]) == 0
    assert cli_main(["add", key]) == 0
    assert "added 0 partition(s); 1 already present" in capsys.readouterr().out
    assert cli_main(["list"]) == 0
    assert capsys.readouterr().out.split() == [key]
    assert cli_main(["add", "not-a-product"]) == 2
