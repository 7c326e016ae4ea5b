"""The model recipe: its pure parts (cloudgan_core.gan.recipe) and a tiny end-to-end run of the entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudgan_assets.demo import INSTANCE_CONFIG
from cloudgan_core.digests import file_digest
from cloudgan_core.gan import recipe


def test_product_specs_depend_only_on_their_arguments():
    specs = recipe.product_specs(3, 5000)
    assert specs == recipe.product_specs(3, 5000) and [s.seed for s in specs] == [5000, 5001, 5002]
    assert all(recipe.SIMULATED_COVER[0] <= s.cloud_cover <= recipe.SIMULATED_COVER[1] for s in specs)
    assert recipe.product_specs(3, 5001)[0].cloud_cover != specs[0].cloud_cover
    assert recipe.training_products(["k0", "k1", "k2"], specs)[1] == {
        "key": "k1", "seed": 5001, "cloud_cover": specs[1].cloud_cover, "land_fraction": recipe.LAND_FRACTION}


@pytest.mark.slow
def test_a_tiny_recipe_run_writes_the_model_card_and_the_instance_settings(tmp_path: Path):
    """Small products would be faster, but the recipe's shape is fixed: 2 products, 2 training steps."""
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--products", "1", "--holdout", "1", "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--crop", "64",
            "--epochs", "1", "--epochs-decay", "0", "--max-steps-per-epoch", "2", "--threads", "1",
            "--work", str(work), "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "CLOUDGAN_STORAGE", "CLOUDGAN_INBOX")}
    proc = subprocess.run([sys.executable, "-m", "cloudgan_assets.model_recipe", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # the Dagster instance of the work folder runs with the project's settings, not a telemetry-only file
    home = work / "dagster_home" / "dagster.yaml"
    assert home.read_text() == INSTANCE_CONFIG.read_text()  # the local instance settings (deploy/dagster.local.yaml)
    card = json.loads((out / "model_card.json").read_text())
    for name in ("G_B", "G_A"):
        assert card["files"][name]["sha256"] == file_digest(out / f"latest_net_{name}.pth")
    evaluation = card["evaluation"]
    assert evaluation["cover_range_percent"] == "(10, 95]" and evaluation["tiles"] > 0
    # the simulator's images follow their masks (thin cloud edges, snow and glint keep an Otsu threshold below 0.9)
    assert evaluation["simulator_images_same_masks"]["iou"] > 0.8
    assert 0.0 <= evaluation["iou"] <= 1.0 and evaluation["threshold_method"] == "otsu"
    text = (out / "model_card.md").read_text()
    assert "| IoU of Otsu brightness threshold vs mask |" in text and "--select train_generator" in text
    assert (work / "heldout_grid.png").read_bytes()[:4] == b"\x89PNG"
