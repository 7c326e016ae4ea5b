"""Real Dagster runs of the dataset assets: surface pool, composites, training set, checks, quality report.

The chain products → sorted_tiles runs for real on two small simulated products. The generator is
not part of these tests: a small stand-in ``synthetic_clouds`` asset writes, from each product's
generator-input masks, a bright blurred copy of the mask as the "generated cloud" (dark outside,
bright inside, dimmer and bleeding a little across the mask edge), in the layout the real asset
writes.
"""

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from cloudgan_assets.assets import dataset, ingest, scenes, tiles
from cloudgan_assets.dataset_checks import (
    COMPOSITE_CHECKS,
    DATASET_CHECKS,
    TRAINING_SET_CHECKS,
)
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, CopernicusResource
from cloudgan_core.atomic import save_npy
from cloudgan_core.clouds import thickness_from_reflectance
from cloudgan_core.composite import tile_geometry
from cloudgan_core.stages import (
    sorted_tiles,
    surface_tiles,
    synthetic_clouds,
    training_set,
)
from tests.dagster_helpers import SMALL_RUN_CONFIG, failure_text, make_inbox

#: real Dagster runs of the cross-product assets on a shared four-product chain
pytestmark = pytest.mark.slow

MODEL_SHA = hashlib.sha256(b"blurred-mask stand-in generator").hexdigest()


@dg.asset(name="synthetic_clouds", partitions_def=products_partitions, group_name="clouds", deps=["sorted_tiles"])
def synthetic_clouds_stand_in(context: dg.AssetExecutionContext, storage: CloudGANStorage) -> None:
    key = context.partition_key
    t = sorted_tiles.read(storage.root_path, key).gan_input
    blur = gaussian_filter(t.masks.astype(np.float32), sigma=(0, 2, 2))
    level = 40.0 + 200.0 * blur
    tint = np.array([1.0, 0.97, 1.03], np.float32)
    clouds = np.clip(np.rint(level[..., None] * tint), 0, 255).astype(np.uint8)
    masks = np.asarray(t.masks, np.uint8)
    # the GAN path of the real stage: S3 (green) inverted to tau with the tile's own geometry
    geometries = [tile_geometry(row, "gan_input") for row in t.index]
    tau = np.stack([thickness_from_reflectance(clouds[i, ..., 1] / np.float32(255.0), geometries[i],
                                               mask=masks[i]).tau for i in range(len(masks))]) \
        if len(masks) else np.zeros(masks.shape, np.float32)
    index = [{**row, "top_height_km": 2.0} for row in t.index]
    synthetic_clouds.write(storage.root_path, key, synthetic_clouds.SyntheticCloudsData(
        clouds, masks, tau, index, model="blurred mask", model_sha256=MODEL_SHA, seed=7))


UPSTREAM = [*dg.load_assets_from_modules([ingest, scenes, tiles]), synthetic_clouds_stand_in]
DATASET = dg.load_assets_from_modules([dataset])
ALL = [*UPSTREAM, *DATASET, *DATASET_CHECKS]


class Env:
    """A storage root with the whole chain materialized, and the Dagster instance that knows its partitions."""

    def __init__(self, root: Path, keys: list[str], instance: dg.DagsterInstance):
        self.root, self.keys, self.instance = root, keys, instance

    def storage(self, root: Path | None = None) -> CloudGANStorage:
        return CloudGANStorage(root=str(root or self.root), inbox=str(self.root.parent / "inbox"))

    def run(self, selection, *, partition_key=None, run_config=None, root=None, raise_on_error=True, tags=None):
        return dg.materialize(ALL, selection=selection, partition_key=partition_key, instance=self.instance,
                              resources={"storage": self.storage(root), "copernicus": CopernicusResource()},
                              run_config=run_config, raise_on_error=raise_on_error, tags=tags)

    def copy(self, dest: Path) -> Path:
        """A copy of the whole storage root (to break things in without touching the shared one)."""
        shutil.copytree(self.root, dest)
        return dest


def check_results(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}


def materializations(result) -> dict[str, dict]:
    return {e.materialization.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("dataset")
    keys = make_inbox(base / "inbox")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, keys)
        e = Env(base / "storage", keys, instance)
        upstream = dg.AssetSelection.assets(*UPSTREAM)
        for key in keys:
            e.run(upstream, partition_key=key, run_config=SMALL_RUN_CONFIG)
        e.results = {"surface_tiles": e.run(["surface_tiles"])}
        e.results["composites"] = [e.run(dg.AssetSelection.assets("composites"), partition_key=k) for k in keys]
        e.results["training_set"] = e.run(dg.AssetSelection.assets("training_set", "quality_report"))
        yield e


def test_surface_pool_counts_land_and_ocean(env):
    md = materializations(env.results["surface_tiles"])["surface_tiles"]
    pool = np.load(env.root / "surface_tiles" / "images.npy")
    assert md["count"].value == len(pool) > 0
    assert md["land"].value + md["ocean"].value == len(pool)
    expected = sum(len(sorted_tiles.read(env.root, k).surface) for k in env.keys)
    assert len(pool) == expected
    assert "data:image/png;base64," in md["preview"].value


def test_composites_materialize_with_checks_passing(env):
    for key, result in zip(env.keys, env.results["composites"]):
        md = materializations(result)["composites"]
        n = len(np.load(env.root / "synthetic_clouds" / key / "masks.npy"))
        assert md["count"].value == n > 0
        assert 0.0 < md["mean_opacity"].value <= 1.0 and md["shadows"].value is True
        assert md["mean_brightness_change_inside"].value > 0
        assert "data:image/png;base64," in md["preview"].value
        checks = check_results(result)
        assert set(checks) == {f"composites:{c.check_key.name}" for c in COMPOSITE_CHECKS}
        assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}
        summary = json.loads((env.root / "composites" / key / "composites.json").read_text())
        assert summary["model_sha256"] == MODEL_SHA and summary["blend"] == "render"


def test_training_set_pairs_up_exactly(env):
    dest = env.root / "training_set"
    numbers = training_set.read(env.root).numbers()
    total = sum(len(np.load(env.root / "composites" / k / "masks.npy")) for k in env.keys)
    assert numbers["images"] == numbers["masks"] == numbers["shadows"] == numbers["clouds"] == \
        numbers["surface"] == numbers["manifest"] == list(range(1, total + 1))
    rows = training_set.read(env.root).manifest
    assert {r["product"] for r in rows} == set(env.keys)
    assert {r["model_sha256"] for r in rows} == {MODEL_SHA}
    # no product in two splits; two products → one train, one test
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["product"], r["split"]) == r["split"]
    assert sorted(split_of.values()) == ["test", "train"]
    changed_inside = cloudy = 0
    for n in numbers["images"]:
        image = np.asarray(Image.open(dest / "images" / f"{n:05d}.png"))
        surface = np.asarray(Image.open(dest / "surface" / f"{n:05d}.png"))
        mask = np.asarray(Image.open(dest / "masks" / f"{n:05d}.png"))
        shadow = np.asarray(Image.open(dest / "shadows" / f"{n:05d}.png"))
        assert set(np.unique(mask).tolist()) <= {0, 255} and set(np.unique(shadow).tolist()) <= {0, 255}
        clear = (mask == 0) & (shadow == 0)
        assert np.array_equal(image[clear], surface[clear]), f"pair {n}: a clear pixel differs from the surface"
        changed_inside += int(np.count_nonzero(np.any(image != surface, axis=-1) & (mask == 255)))
        cloudy += int(np.count_nonzero(mask == 255))
    assert changed_inside / cloudy > 0.95


def test_training_set_zip_metadata_and_checks(env):
    result = env.results["training_set"]
    md = materializations(result)
    dest = env.root / "training_set"
    zpath = dest / "training_set.zip"
    on_disk = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p != zpath)
    with zipfile.ZipFile(zpath) as zf:
        assert sorted(zf.namelist()) == on_disk
        for name in on_disk:
            assert zf.read(name) == (dest / name).read_bytes(), name
    ts = md["training_set"]
    assert ts["zip_sha256"].value == hashlib.sha256(zpath.read_bytes()).hexdigest()
    assert ts["count"].value == ts["train_pairs"].value + ts["val_pairs"].value + ts["test_pairs"].value
    assert "data:image/png;base64," in ts["preview"].value
    assert "| cloud cover | pairs |" in ts["cover_histogram"].value
    checks = check_results(result)
    assert set(checks) == {f"training_set:{c.check_key.name}" for c in TRAINING_SET_CHECKS}
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}


def test_quality_report_compares_with_the_original_blend(env):
    md = materializations(env.results["training_set"])["quality_report"]
    report = json.loads((env.root / "quality_report" / "report.json").read_text())
    assert (env.root / "quality_report" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a, o = report["composite"], report["original"]
    print(f"\ndetector IoU composite {a['detector_iou']:.3f} vs original {o['detector_iou']:.3f}; per tile "
          f"{a['detector_iou_per_tile']:.3f} vs {o['detector_iou_per_tile']:.3f}; |change| outside "
          f"{a['brightness_outside_abs']:.2f} vs {o['brightness_outside_abs']:.2f} DN; pairs {report['n_pairs']}; "
          f"realism {report['realism']['composite']}")
    assert a["brightness_outside_abs"] == 0.0 < o["brightness_outside_abs"]
    assert report["generator"] == "gan" and report["realism"]["composite"]["source"] == "bands"
    assert md["composite_detector_iou"].value == pytest.approx(a["detector_iou"], abs=1e-6)
    assert "| detector IoU (set Otsu) |" in md["table"].value
    assert "| cloud cover | pairs |" in md["cover_histogram"].value
    assert "data:image/png;base64," in md["preview"].value


def test_rematerializing_gives_identical_bytes(env):
    zpath = env.root / "training_set" / "training_set.zip"
    before = zpath.read_bytes()
    again = env.run(dg.AssetSelection.assets("composites"), partition_key=env.keys[0])
    assert again.success
    result = env.run(dg.AssetSelection.assets("training_set"))
    assert zpath.read_bytes() == before
    assert materializations(result)["training_set"]["zip_sha256"].value == hashlib.sha256(before).hexdigest()


def test_composite_checks_fail_on_one_changed_clear_pixel(env, tmp_path):
    root = env.copy(tmp_path / "storage")
    key = env.keys[0]
    folder = root / "composites" / key
    images, masks = np.load(folder / "images.npy"), np.load(folder / "masks.npy")
    t, r, c = (int(x[0]) for x in np.nonzero(masks == 0))
    images[t, r, c, 1] ^= 0x01
    save_npy(folder / "images.npy", images)
    # a run of the checks alone: the partition comes from the run's tag
    result = env.run(dg.AssetSelection.checks(*COMPOSITE_CHECKS), tags={"dagster/partition": key}, root=root,
                     raise_on_error=False)
    checks = check_results(result)
    bad = checks["composites:outside_mask_unchanged"]
    assert not bad.passed and bad.metadata["differing_pixels"].value == 1
    assert checks["composites:aligned"].passed and checks["composites:tiles_sane"].passed


def test_original_blend_is_blocked_from_the_training_set(env, tmp_path):
    root = env.copy(tmp_path / "storage")
    zip_before = (root / "training_set" / "training_set.zip").read_bytes()
    result = env.run(dg.AssetSelection.assets("composites", "training_set"), partition_key=env.keys[0], root=root,
                     run_config={"ops": {"composites": {"config": {"blend": "original"}}}}, raise_on_error=False)
    checks = check_results(result)
    assert not checks["composites:outside_mask_unchanged"].passed
    assert "training_set" not in materializations(result)  # blocked by the failing check
    assert (root / "training_set" / "training_set.zip").read_bytes() == zip_before


def test_training_set_checks_fail_on_a_missing_mask(env, tmp_path):
    root = env.copy(tmp_path / "storage")
    (root / "training_set" / "masks" / "00001.png").unlink()
    result = env.run(dg.AssetSelection.checks(*TRAINING_SET_CHECKS), root=root, raise_on_error=False)
    checks = check_results(result)
    aligned = checks["training_set:aligned"]
    assert not aligned.passed and "masks" in aligned.description
    assert not checks["training_set:outside_mask_unchanged"].passed
    assert checks["training_set:min_pairs"].passed


def test_too_few_pairs_blocks_the_quality_report(env, tmp_path):
    root = env.copy(tmp_path / "storage")
    report_before = (root / "quality_report" / "report.json").read_bytes()
    result = env.run(dg.AssetSelection.assets("training_set", "quality_report"), root=root, raise_on_error=False,
                     run_config={"ops": {"training_set": {"config": {"max_pairs": 3}},
                                         "training_set_min_pairs": {"config": {"min_pairs": 5}}}})
    checks = check_results(result)
    assert not checks["training_set:min_pairs"].passed
    assert "quality_report" not in materializations(result)
    assert (root / "quality_report" / "report.json").read_bytes() == report_before
    assert len(training_set.read(root).manifest) == 3


def test_failed_rematerialization_keeps_the_old_set(env, tmp_path):
    root = env.copy(tmp_path / "storage")
    dest = root / "training_set"
    before = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    # a corrupt mask in the second product: the export fails part-way, after the first product's pairs
    key = sorted(env.keys)[1]
    masks = np.load(root / "composites" / key / "masks.npy")
    masks[-1, 0, 0] = 2
    save_npy(root / "composites" / key / "masks.npy", masks)
    result = env.run(dg.AssetSelection.assets("training_set"), root=root, raise_on_error=False)
    text = failure_text(result)  # the error names the pair, its product and the problem
    assert not result.success and f"({key} row " in text and "mask values must be 0 or 1" in text
    after = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no temporary folder left


def test_empty_partition_is_valid_and_empty_pool_is_an_error(env, tmp_path):
    root = env.copy(tmp_path / "storage")
    key = env.keys[0]
    made = synthetic_clouds.read(root, key)
    synthetic_clouds.write(root, key, synthetic_clouds.SyntheticCloudsData(
        made.clouds[:0], made.masks[:0], made.tau[:0], [], model=made.model, model_sha256=made.model_sha256))
    # no surface tile at all: zero clouds are still fine ...
    pool = surface_tiles.read(root)
    surface_tiles.write(root, pool.images[:0], [], pool.bands[:0], pool.flags[:0])
    result = env.run(dg.AssetSelection.assets("composites"), partition_key=key, root=root)
    md = materializations(result)["composites"]
    assert md["count"].value == 0 and "valid result" in md["empty"].value
    assert all(c.passed for c in check_results(result).values())
    # ... but clouds without a surface pool are a clear error
    bad = env.run(dg.AssetSelection.assets("composites"), partition_key=env.keys[1], root=root,
                  raise_on_error=False)
    assert not bad.success
    message = failure_text(bad)
    assert "surface pool" in message and "is empty" in message


def test_user_surface_folder_adds_tiles(env, tmp_path):
    root = env.copy(tmp_path / "storage")
    user = tmp_path / "user_surfaces"
    user.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(20, 200, (150, 140, 3), dtype=np.uint8)).save(user / "a.png")  # 2 x 2 tiles
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(user / "b.png")  # all black: skipped
    result = env.run(["surface_tiles"], root=root,
                     run_config={"ops": {"surface_tiles": {"config": {"extra_surface_dir": str(user)}}}})
    md = materializations(result)["surface_tiles"]
    base = materializations(env.results["surface_tiles"])["surface_tiles"]["count"].value
    assert md["user"].value == 4 and md["count"].value == base + 4
    assert md["user_tiles_skipped_black"].value == 1
    index = (root / "surface_tiles" / "index.csv").read_text()
    assert "user:a.png:64:64" in index
    Image.fromarray(np.full((40, 300, 3), 90, np.uint8)).save(user / "c.png")
    bad = env.run(["surface_tiles"], root=root, raise_on_error=False,
                  run_config={"ops": {"surface_tiles": {"config": {"extra_surface_dir": str(user)}}}})
    assert "c.png" in failure_text(bad) and "smaller than one 64 x 64 tile" in failure_text(bad)
