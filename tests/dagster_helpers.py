"""Shared set-up for tests that run the Dagster definitions on simulated products."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from cloudgan_assets.resources import CloudGANStorage, CopernicusResource, GeneratorModel, TorchDevice
from cloudgan_core.simulate import simulate_product
from cloudgan_core.slstr.product import product_id

#: Small scenes tile into 64-pixel tiles in these tests.
SMALL_RUN_CONFIG = {"ops": {"tiles": {"config": {"tile_size": 64}}}}


def make_inbox(inbox: Path, seeds: tuple[int, ...] = (21, 22), *, rows: int = 192, cols: int = 256) -> list[str]:
    """Simulate small products as zips into ``inbox``; return their partition keys."""
    keys = []
    for seed in seeds:
        path = simulate_product(inbox, seed=seed, rows=rows, cols=cols, as_zip=True, cloud_cover=0.3 + 0.05 * (seed % 3))
        keys.append(product_id(path.name))
    return keys


def storage_for(tmp: Path) -> CloudGANStorage:
    return CloudGANStorage(root=str(tmp / "storage"), inbox=str(tmp / "inbox"))


def resources_for(tmp: Path) -> dict:
    """The resources the per-product assets need, rooted in ``tmp`` (CDSE from the environment)."""
    return {"storage": storage_for(tmp), "copernicus": CopernicusResource(),
            "torch_device": TorchDevice(device="cpu"), "generator": GeneratorModel()}


def tiny_generator(path: Path) -> Path:
    """A small random-weight generator checkpoint (reference format) for fast runs."""
    import torch

    from cloudgan_core.gan import ResnetGenerator, init_weights, save_generator

    net = init_weights(ResnetGenerator(ngf=8, n_blocks=2), generator=torch.Generator().manual_seed(0))
    return save_generator(net, path)


def failure_text(result) -> str:
    """The message of the failed step with its causes (what the UI shows)."""
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    err, parts = failure.event_specific_data.error, []
    while err is not None:
        parts.append(err.message)
        err = err.cause
    return "\n".join(parts)
