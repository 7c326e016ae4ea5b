"""Clouds in every band through the stages: synthetic_clouds (gan | procedural) → composites (rendered,
with shadows) → training_set (PNGs + netCDF) → quality_report (realism figures).

Inputs are the nine-band data contract's files (tests/stage_helpers.py); the GAN is a real, tiny
CycleGAN generator with random weights.
"""

from __future__ import annotations

import json
import math

import dagster as dg
import numpy as np
import pytest
import xarray as xr

from cloudgan_core.clouds import BANDS, Geometry, edge_taper, shadow_shift_per_km
from cloudgan_core.errors import CloudGANError
from cloudgan_core.stages import composites, quality_report, synthetic_clouds, training_set
from cloudgan_core.validation import check_outside_mask_unchanged
from tests.stage_helpers import GEOMETRY, write_pool, write_sorted

TILE = 64


def _tiny_generator():
    import torch

    from cloudgan_core.gan import ResnetGenerator, init_weights

    return init_weights(ResnetGenerator(ngf=4, n_blocks=1), generator=torch.Generator().manual_seed(0))


def _central_masks(n: int, size: int = TILE) -> np.ndarray:
    """Round clouds in the middle of the tile (cover ~12-30 %)."""
    yy, xx = np.mgrid[:size, :size]
    r2 = (yy - size / 2) ** 2 + (xx - size / 2) ** 2
    return np.stack([(r2 <= (size * (0.2 + 0.03 * i)) ** 2).astype(np.uint8) for i in range(n)])


def _scene(root, *, n: int = 3, geometry: dict[str, float] = GEOMETRY):
    """Product P with ``n`` cloud masks, products A and B with clear surfaces, the pool, all TILE px."""
    write_sorted(root, "P", [0.1], gan_masks=_central_masks(n), size=TILE, geometry=geometry)
    write_sorted(root, "A", [0.9, 0.1, 0.6], size=TILE, seed=1, snow_tiles=(0,), geometry=geometry)
    write_sorted(root, "B", [0.0, 0.2], size=TILE, seed=2, geometry=geometry)
    write_pool(root, ["A", "B"])


def _procedural(**kw) -> synthetic_clouds.SyntheticCloudsConfig:
    return synthetic_clouds.SyntheticCloudsConfig(generator="procedural", **kw)


# --------------------------------------------------------------------------- synthetic_clouds


def test_procedural_clouds_write_tau_index_and_no_timings(tmp_path):
    _scene(tmp_path)
    result = synthetic_clouds.build(tmp_path, "P", _procedural(mean_tau=12.0, top_height_km=3.0, seed=4))
    data = synthetic_clouds.read(tmp_path, "P")
    assert result.tiles == 3 and data.generator == "procedural" and data.seed == 4
    assert data.tau.dtype == np.float32 and data.tau.shape == data.masks.shape
    assert np.array_equal(data.tau > 0, data.masks == 1)
    assert data.tau[data.masks == 1].min() >= 0.3
    assert data.settings["mean_tau"] == 12.0 and data.settings["top_height_km"] == 3.0
    for row in data.index:
        assert row["top_height_km"] == 3.0
        assert {k: row[k] for k in GEOMETRY} == GEOMETRY
    # the picture is the cloud over black: bright inside, black outside
    assert (data.clouds[data.masks == 0] == 0).all() and data.clouds[data.masks == 1].mean() > 40
    info = json.loads((synthetic_clouds.folder(tmp_path, "P") / "clouds.json").read_text())
    assert not {"seconds", "tiles_per_second", "device", "precision", "batch_size"} & set(info)
    assert info["generator"] == "procedural" and info["procedural"]["mean_tau"] == 12.0


@pytest.mark.slow
def test_gan_clouds_are_inverted_to_tau_and_identical_between_runs(tmp_path):
    _scene(tmp_path)
    model = _tiny_generator()
    kwargs = dict(model=model, model_name="tiny.pth", model_sha256="ab" * 32, device="cpu", batch_size=2)
    result = synthetic_clouds.build(tmp_path, "P", **kwargs)
    assert result.figures()["seconds"] is not None  # timings reach the metadata ...
    folder = synthetic_clouds.folder(tmp_path, "P")
    first = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert b"seconds" not in first["clouds.json"] and b"device" not in first["clouds.json"]  # ... never the files
    synthetic_clouds.build(tmp_path, "P", **kwargs)
    assert {p.name: p.read_bytes() for p in sorted(folder.iterdir())} == first
    data = synthetic_clouds.read(tmp_path, "P")
    assert data.generator == "gan" and data.model_sha256 == "ab" * 32 and data.settings is None
    assert np.array_equal(data.tau > 0, data.masks == 1)
    # brighter (anti-aliased) generated S3 → thicker cloud: the inversion is monotone in the core ...
    width = synthetic_clouds.SyntheticCloudsConfig().edge_width
    taper = np.stack([edge_taper(m == 1, width) for m in data.masks])
    inside = (data.masks == 1) & (taper == 1.0)
    g = np.stack([synthetic_clouds.antialias(c[..., 1].astype(np.float32) / np.float32(255.0), m == 1)
                  for c, m in zip(data.clouds, data.masks)])[inside]
    order = np.argsort(g, kind="stable")
    tau = np.asarray(data.tau)[inside][order]
    assert (np.diff(tau) >= -1e-4).mean() > 0.99 and np.corrcoef(g, np.asarray(data.tau)[inside])[0, 1] > 0.8
    # ... and thin towards the mask edge: the 1-pixel ring holds a small share of the core's tau
    ring = (data.masks == 1) & (taper > 0) & (taper < 0.05)
    assert ring.any() and np.asarray(data.tau)[ring].mean() < 0.2 * np.asarray(data.tau)[inside].mean()
    with pytest.raises(CloudGANError, match="needs a generator model"):
        synthetic_clouds.build(tmp_path, "P")


def test_clouds_need_the_angles_of_their_tiles(tmp_path):
    write_sorted(tmp_path, "P", [0.1], gan_masks=_central_masks(1), size=TILE)
    index = synthetic_clouds.sorted_tiles.folder(tmp_path, "P") / "gan_input" / "index.csv"
    lines = index.read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("solar_zenith")
    index.write_text("\n".join(",".join(v for j, v in enumerate(line.split(",")) if j != drop) for line in lines))
    with pytest.raises(CloudGANError, match="no solar_zenith.*materialize tiles and sorted_tiles again"):
        synthetic_clouds.build(tmp_path, "P", _procedural())


@pytest.mark.parametrize("bad, text", [({"mean_tau": 0.1}, "mean_tau must be within"),
                                       ({"top_height_km": 30}, "top_height_km must be within"),
                                       ({"edge_width": -1}, "edge_width must be within"),
                                       ({"generator": "vae"}, "generator")])
def test_generator_settings_are_checked(bad, text):
    with pytest.raises(ValueError, match=text):
        synthetic_clouds.SyntheticCloudsConfig(**bad)


# --------------------------------------------------------------------------- composites


def test_shadow_falls_on_the_anti_solar_side_at_the_geometry_distance(tmp_path):
    # sun due south at 60 deg, nadir view, 2 km tops: the shadow lies 2 tan(60°) km = 6.9 -> 7 px north
    geometry = {"solar_zenith": 60.0, "solar_azimuth": 180.0, "view_zenith": 0.0, "view_azimuth": 0.0}
    _scene(tmp_path, n=1, geometry=geometry)
    synthetic_clouds.build(tmp_path, "P", _procedural(mean_tau=30.0, edge_width=0.0, top_height_km=2.0))
    composites.build(tmp_path, "P")
    d = composites.read(tmp_path, "P")
    mask, shadow = d.masks[0].astype(bool), d.shadows[0].astype(bool)
    assert shadow.sum() > 20 and not (mask & shadow).any()
    dr, dc = shadow_shift_per_km(Geometry(**geometry))
    shift = (round(2.0 * dr), round(2.0 * dc))
    assert shift == (-7, 0)  # rows run south: north is up
    moved = np.zeros_like(mask)
    moved[:shift[0]] = mask[-shift[0]:]
    assert np.array_equal(shadow, moved & ~mask)  # exactly the cloud moved 7 px away from the sun
    # darker in the reflective bands, unchanged in the thermal ones
    s3, s8 = BANDS.index("S3"), BANDS.index("S8")
    assert (d.bands[0, s3][shadow] < d.surface_bands[0, s3][shadow]).all()
    assert np.array_equal(d.bands[0, s8][shadow], d.surface_bands[0, s8][shadow])
    # the index says where the surface and its angles come from
    assert d.index[0]["solar_zenith"] == 60.0 and d.index[0]["shadow_fraction"] == round(shadow.mean(), 6)


def test_outside_cloud_and_shadow_every_byte_and_band_is_the_surface(tmp_path):
    _scene(tmp_path)
    synthetic_clouds.build(tmp_path, "P", _procedural())
    result = composites.build(tmp_path, "P")
    d = composites.read(tmp_path, "P")
    touched = (d.masks == 1) | (d.shadows == 1)
    assert d.shadows.any()
    assert np.array_equal(d.images[~touched], d.surfaces[~touched])
    bands, surface = np.moveaxis(d.bands, 1, -1), np.moveaxis(d.surface_bands, 1, -1)
    assert np.array_equal(bands[~touched], surface[~touched])
    assert check_outside_mask_unchanged(d.images, d.surfaces, d.masks, d.shadows).passed
    assert not check_outside_mask_unchanged(d.images, d.surfaces, d.masks).passed  # shadows do change pixels
    # clouds: brighter in S3 and colder in S8 than the surface under them
    s3, s8 = BANDS.index("S3"), BANDS.index("S8")
    cloud = d.masks == 1
    assert (d.bands[:, s3][cloud] > d.surface_bands[:, s3][cloud]).mean() > 0.95
    assert (d.bands[:, s8][cloud] < d.surface_bands[:, s8][cloud]).all()
    assert result.summary.shadows and result.summary.generator == "procedural"
    # shadows off: no shadow, outside the cloud the surface
    composites.build(tmp_path, "P", composites.CompositesConfig(shadows=False))
    d = composites.read(tmp_path, "P")
    assert not d.shadows.any() and np.array_equal(d.images[d.masks == 0], d.surfaces[d.masks == 0])


def test_original_blend_and_removed_settings(tmp_path):
    _scene(tmp_path)
    synthetic_clouds.build(tmp_path, "P", _procedural())
    composites.build(tmp_path, "P", composites.CompositesConfig(blend="original"))
    d = composites.read(tmp_path, "P")
    assert np.isnan(d.bands).all() and not d.shadows.any()
    assert not check_outside_mask_unchanged(d.images, d.surfaces, d.masks, d.shadows).passed
    for old in ("min_opacity", "max_opacity", "gamma", "whiten"):
        with pytest.raises(ValueError, match=f"{old}: removed with the 8-bit alpha blend"):
            composites.CompositesConfig(**{old: 0.5})


def test_a_pool_without_bands_is_refused_by_name(tmp_path):
    _scene(tmp_path, n=1)
    (tmp_path / "surface_tiles" / "bands.npy").unlink()
    synthetic_clouds.build(tmp_path, "P", _procedural())
    with pytest.raises(CloudGANError, match="bands.npy is missing.*materialize surface_tiles again"):
        composites.build(tmp_path, "P")


# --------------------------------------------------------------------------- training set and report


def _chain(root, generator: str = "procedural", **clouds_kw):
    _scene(root)
    write_sorted(root, "Q", [0.1], gan_masks=_central_masks(2)[::-1], size=TILE, seed=5)
    config = _procedural(**clouds_kw) if generator == "procedural" else synthetic_clouds.SyntheticCloudsConfig()
    model = None if generator == "procedural" else _tiny_generator()
    for key in ("P", "Q"):
        synthetic_clouds.build(root, key, config, model=model, model_sha256="cd" * 32, device="cpu", batch_size=2)
        composites.build(root, key)
    ts = training_set.build(root, products=["P", "Q"])
    return ts, quality_report.build(root)


@pytest.mark.slow
def test_netcdf_opens_whole_and_matches_the_pngs(tmp_path):
    ts, _ = _chain(tmp_path)
    data = training_set.read(tmp_path)
    images, masks, shadows, surfaces = (data.arrays(n) for n in ("images", "masks", "shadows", "surface"))
    assert shadows.any()
    manifest = {int(r["index"]): r for r in data.manifest}
    assert all(r["shadows"] is True and r["generator"] == "procedural" and r["bands_source"] == "product"
               for r in manifest.values())
    seen = 0
    for split in ("train", "val", "test"):
        with xr.open_dataset(tmp_path / "training_set" / f"{split}.nc") as ds:
            assert ds.attrs["generator"] == "procedural" and int(ds.attrs["shadows"]) == 1
            assert ds.attrs["split"] == split
            assert list(ds["band"].values) == list(BANDS)
            assert list(ds["band_units"].values) == ["1"] * 6 + ["K"] * 3
            assert ds["bands"].dims == ("pair", "band", "y", "x") and ds["bands"].dtype == np.float32
            for j, number in enumerate(ds["pair"].values.tolist()):
                k = number - 1
                row = manifest[number]
                assert row["split"] == split and ds["product"].values[j] == row["product"]
                assert ds["surface_source"].values[j] == row["surface_source"]
                assert np.array_equal(ds["cloud_mask"].values[j], masks[k])
                assert np.array_equal(ds["shadow_mask"].values[j], shadows[k])
                # the PNG is the false colour of the netCDF bands where cloud or shadow, the surface elsewhere
                from cloudgan_core.clouds import false_color

                touched = (masks[k] == 1) | (shadows[k] == 1)
                assert np.array_equal(false_color(ds["bands"].values[j])[touched], images[k][touched])
                assert np.array_equal(images[k][~touched], surfaces[k][~touched])
                seen += 1
    assert seen == ts.summary.count == len(manifest) > 0
    card = (tmp_path / "training_set" / "README.md").read_text()
    for word in ("shadows/N.png", "train.nc", "band_units", "snow_mask", "xr.open_dataset", "- shadows: on"):
        assert word in card
    import zipfile

    with zipfile.ZipFile(ts.summary.zip_path) as zf:
        names = set(zf.namelist())
    assert {"train.nc", "val.nc", "test.nc", "manifest.jsonl", "README.md", "shadows/00001.png"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["procedural", "gan"])
def test_both_generators_run_and_the_report_names_them_with_realism_figures(tmp_path, generator):
    ts, report = _chain(tmp_path, generator)
    saved = json.loads((tmp_path / "quality_report" / "report.json").read_text())
    assert saved["generator"] == generator == report.report.generator
    assert saved["realism_pairs"] == ts.summary.count
    comp, orig = saved["realism"]["composite"], saved["realism"]["original"]
    assert comp["source"] == "bands" and orig["source"] == "false_colour"
    assert comp["bright_cold_fraction"] > 0.9 and orig["bright_cold_fraction"] is None
    assert comp["s5_s3_snow_pixels"] > 0 or comp["s5_s3_snow"] is None
    assert saved["composite"]["brightness_outside_abs"] == 0.0  # shadows left out, clear pixels exact
    assert set(saved["targets_met"]) >= {"texture_slope", "nyquist_ratio", "edge_opacity_ratio"}
    figures = report.figures()
    assert figures["generator"] == generator and "composite_edge_opacity_ratio" in figures
    assert "texture_slope" in figures["table"] and "original 50 % blend" in figures["table"]
    back = quality_report.read(tmp_path)
    assert back.report == report.report
    assert report.plot.shape[0] > 270  # the realism table under the charts


@pytest.mark.slow
def test_the_chain_gives_the_same_bytes_twice(tmp_path):
    def files(root):
        out = {}
        for stage in ("synthetic_clouds", "composites", "training_set", "quality_report"):
            for p in sorted((root / stage).rglob("*")):
                if p.is_file():
                    out[str(p.relative_to(root))] = p.read_bytes()
        return out

    _chain(tmp_path / "a", seed=3)
    _chain(tmp_path / "b", seed=3)
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 40
    assert [k for k in a if a[k] != b[k]] == []
    _chain(tmp_path / "c", seed=4)  # another seed, other clouds
    c = files(tmp_path / "c")
    assert c["synthetic_clouds/P/tau.npy"] != a["synthetic_clouds/P/tau.npy"]


@pytest.mark.slow
def test_dagster_assets_render_with_shadows_and_checks_pass(tmp_path):
    from cloudgan_assets.assets import clouds as clouds_assets
    from cloudgan_assets.assets import dataset
    from cloudgan_assets.dataset_checks import DATASET_CHECKS
    from cloudgan_assets.partitions import products_partitions
    from cloudgan_assets.resources import CloudGANStorage, GeneratorModel, TorchDevice

    from cloudgan_core.simulate import product_name
    from cloudgan_core.slstr.names import product_id

    root = tmp_path / "storage"
    keys = [product_id(product_name(seed)) for seed in (71, 72)]
    write_sorted(root, "A", [0.9, 0.1, 0.6], size=TILE, seed=1, snow_tiles=(0,))
    write_pool(root, ["A"])
    for j, key in enumerate(keys):
        write_sorted(root, key, [], gan_masks=_central_masks(2 + j), size=TILE, seed=5 + j)

    @dg.asset(name="sorted_tiles", partitions_def=products_partitions)
    def sorted_stand_in() -> None:  # written above in the contract's layout
        return None

    @dg.asset(name="surface_tiles", deps=["sorted_tiles"])
    def pool_stand_in() -> None:
        return None

    assets = [sorted_stand_in, pool_stand_in, clouds_assets.synthetic_clouds, dataset.composites,
              dataset.training_set, dataset.quality_report, *DATASET_CHECKS]
    resources = {"storage": CloudGANStorage(root=str(root), inbox=str(tmp_path / "inbox")),
                 "torch_device": TorchDevice(device="cpu"), "generator": GeneratorModel()}
    clouds_config = {"ops": {"synthetic_clouds": {"config": {"generator": "procedural"}}}}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(products_partitions.name, keys)
        for key in keys:
            result = dg.materialize(assets, selection=["synthetic_clouds", "composites"], partition_key=key,
                                    instance=instance, resources=resources, run_config=clouds_config)
            checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
            assert checks["outside_mask_unchanged"] and checks["inside_mask_changed"], checks
            md = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
                  for e in result.get_asset_materialization_events()}
            assert md["synthetic_clouds"]["generator"].value == "procedural"
            assert md["composites"]["shadows"].value is True
        result = dg.materialize(assets, selection=["training_set", "quality_report"], instance=instance,
                                resources=resources,
                                run_config={"ops": {"training_set_min_pairs": {"config": {"min_pairs": 1}}}})
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["outside_mask_unchanged"] and checks["aligned"], checks
        md = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
              for e in result.get_asset_materialization_events()}
        assert md["quality_report"]["generator"].value == "procedural"
        assert not math.isnan(md["quality_report"]["composite_bright_cold_fraction"].value)


def test_antialias_removes_period_2_and_4_checkerboards_and_keeps_a_flat_cloud():
    yy, xx = np.mgrid[:32, :32]
    mask = np.ones((32, 32), bool)
    flat = np.full((32, 32), 0.6, np.float32)
    period2 = (flat + np.float32(0.1) * ((yy + xx) % 2 * 2 - 1)).astype(np.float32)
    period4 = (flat + np.float32(0.1) * np.where((xx // 2) % 2 == 0, 1, -1)).astype(np.float32)
    for pattern in (period2, period4):
        out = synthetic_clouds.antialias(pattern.astype(np.float32), mask)
        assert np.abs(out[4:-4, 4:-4] - 0.6).max() < 1e-6  # the pattern is gone (away from the mirrored border)
    np.testing.assert_allclose(synthetic_clouds.antialias(flat, mask), flat, atol=1e-6)
    half = mask.copy()
    half[:, :16] = False
    out = synthetic_clouds.antialias(period2.astype(np.float32), half)
    assert np.array_equal(out[:, :16], period2[:, :16])  # outside the mask the input stays
