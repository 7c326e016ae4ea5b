"""The recipe of the bundled default generator (``data/models/``): its data, evaluation and model card.

The Dagster side (running the scene stages and ``train_generator`` as assets) is
``python -m cloudgan_assets.model_recipe``; this module holds what does not need Dagster:

1. :func:`product_specs` and :func:`simulate`: seeded, ocean-heavy simulated SL_1_RBT products
   for training, and more with other seeds held out for the evaluation;
2. :func:`heldout_tiles`: the held-out products' 256-px ``gan_input`` mask tiles in the
   generator's cover range, with the products' own false colour at the same places;
3. :func:`evaluate`: :func:`cloudgan_core.gan.evaluate.mask_figures` of the trained G_B's output
   and, as the reference a perfect model would reach, of the simulator's own images;
4. :func:`heldout_grid_png`, :func:`publish` and :func:`card_markdown`: the mask | output | image
   grid, the model files with their digests, and the model card.
"""

from __future__ import annotations

import io
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloudgan_core.atomic import write_bytes, write_text
from cloudgan_core.cover import CoverRange
from cloudgan_core.digests import file_digest
from cloudgan_core.stages import sorted_tiles

#: Seeds of the training products start here; held-out products use HOLDOUT_SEED_BASE + i.
TRAIN_SEED_BASE = 5000
HOLDOUT_SEED_BASE = 7000
#: Rows x columns of the simulated products, their land fraction, and the range their cloud cover
#: (the simulator's ``cloud_cover``, a fraction of the scene) is drawn from.
PRODUCT_SHAPE = (768, 1024)
LAND_FRACTION = 0.05
SIMULATED_COVER = (0.30, 0.60)
#: The scene stages the recipe runs for every product before training.
PIPELINE_STAGES = ("products", "masks", "false_color", "tiles", "sorted_tiles")
#: Cover of the held-out mask tiles the model is evaluated on (the generator's range).
EVAL_COVER = CoverRange(10.0, 95.0)

#: The model card's "Data and limits" text.
NOTES = (
    "Trained on SIMULATED products only: the simulator's clouds are a thresholded fractal field with "
    "smooth opacity, so this model learns that look (bright, white-ish, soft-edged cloud over a dark "
    "ocean), not real cloud texture. Real products give better clouds. To retrain on real data, put "
    "SL_1_RBT products in the inbox, materialize the process_product job up to sorted_tiles for their "
    "partitions, then materialize train_generator with those partitions, e.g. `dagster asset "
    "materialize -m cloudgan_assets.definitions --select train_generator --config-json "
    "'{\"ops\": {\"train_generator\": {\"config\": {\"partitions\": [\"<key>\", ...], \"ngf\": 64, "
    "\"n_blocks\": 9, \"epochs\": 100, \"epochs_decay\": 100}}}}'` (reference size; a GPU via the "
    "torch_device resource), and point GeneratorModel.checkpoint at the training folder's "
    "latest_net_G_B.pth. The generator has no noise input, so more than about 60 px from a cloud edge "
    "(half the ~120-px receptive field of the 6-block generator) a large cloud comes out as a nearly uniform "
    "bright grey; the shading sits near the edges. Evaluation: brightness = mean of the 3 output channels (0..255); "
    "IoU of (brightness > Otsu threshold over all generated pixels) against the mask, pooled over the "
    "held-out tiles.")


@dataclass(frozen=True)
class ProductSpec:
    """One simulated product: its seed, cloud cover (fraction of the scene) and land fraction."""

    seed: int
    cloud_cover: float
    land_fraction: float


def product_specs(count: int, seed_base: int) -> list[ProductSpec]:
    """``count`` simulated products with seeds ``seed_base + i`` and a cover drawn uniformly from
    :data:`SIMULATED_COVER` by a generator seeded with ``seed_base`` (so the list depends only on its
    arguments)."""
    rng = np.random.default_rng(seed_base)
    return [ProductSpec(seed_base + i, round(float(rng.uniform(*SIMULATED_COVER)), 4), LAND_FRACTION)
            for i in range(count)]


def simulate(inbox: Path, specs: Sequence[ProductSpec]) -> list[str]:
    """Write the products of ``specs`` into ``inbox`` as zips (kept when present); returns their ids."""
    from cloudgan_core.simulate import product_name, simulate_product
    from cloudgan_core.slstr.names import product_id

    inbox.mkdir(parents=True, exist_ok=True)
    keys = []
    for spec in specs:
        key = product_id(product_name(spec.seed))
        if not (inbox / f"{key}.zip").exists():
            simulate_product(inbox, seed=spec.seed, rows=PRODUCT_SHAPE[0], cols=PRODUCT_SHAPE[1],
                             cloud_cover=spec.cloud_cover, land_fraction=spec.land_fraction, as_zip=True)
        keys.append(key)
    return keys


@dataclass(frozen=True)
class HeldOut:
    """Held-out mask tiles (``uint8 (N, H, W)``), the products' own false colour at the same places
    (``uint8 (N, H, W, 3)``), and the products they come from."""

    masks: np.ndarray
    images: np.ndarray
    products: tuple[str, ...]


def heldout_tiles(root: Path, keys: Sequence[str], cover: CoverRange = EVAL_COVER) -> HeldOut:
    """The ``gan_input`` mask tiles of ``keys`` (read through the sorted-tiles stage) with cover in
    ``cover``, and the products' own false-colour tiles at the same places."""
    masks_out, images_out = [], []
    for key in keys:
        tiles = sorted_tiles.read(root, key).gan_input
        masks = np.asarray(tiles.masks)
        keep = cover.contains_fraction(masks.reshape(len(masks), -1).mean(axis=1))
        masks_out.append(masks[keep])
        images_out.append(np.asarray(tiles.images)[keep])
    return HeldOut(np.concatenate(masks_out), np.concatenate(images_out), tuple(keys))


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in values.items()}


def evaluate(g_b, heldout: HeldOut, *, cover: CoverRange = EVAL_COVER, batch_size: int = 8) -> dict[str, Any]:
    """The card's ``evaluation``: G_B's :class:`~cloudgan_core.gan.evaluate.MaskFigures` on the held-out
    masks, and (``simulator_images_same_masks``) the same figures of the simulator's own images."""
    from cloudgan_core.gan.evaluate import evaluate_generator, mask_figures

    ours = evaluate_generator(g_b, heldout.masks, batch_size=batch_size)
    reference = mask_figures(heldout.images, heldout.masks)
    return {"held_out_products": list(heldout.products), "tile_size": int(heldout.masks.shape[1]),
            "cover_range_percent": cover.label.removesuffix(" %"), **_rounded(ours.as_dict()),
            "simulator_images_same_masks": _rounded(reference.as_dict())}


def heldout_grid_png(g_b, heldout: HeldOut, rows: int = 8) -> bytes:
    """A PNG of ``rows`` held-out tiles spread over the set: mask | G_B output | simulator image."""
    from PIL import Image

    from cloudgan_core.gan.inference import generate_clouds
    from cloudgan_core.preview import grid

    n = len(heldout.masks)
    pick = np.linspace(0, n - 1, min(rows, n)).round().astype(int)
    clouds = generate_clouds(g_b, heldout.masks[pick], batch_size=rows).clouds
    png = io.BytesIO()
    Image.fromarray(grid([[heldout.masks[i], clouds[j], heldout.images[i]] for j, i in enumerate(pick)], 128)).save(
        png, format="PNG")
    return png.getvalue()


def machine(torch_threads: int) -> dict[str, Any]:
    """Platform, CPU model and core count of this machine, for the card."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch_threads}


def card_markdown(card: Mapping[str, Any]) -> str:
    """The training card's Markdown plus the recipe's own sections (Dagster command, timing, evaluation)."""
    from cloudgan_core.gan.training import render_model_card

    evaluation = dict(card["evaluation"])
    reference = evaluation.pop("simulator_images_same_masks")
    text = render_model_card({**card, "evaluation": None, "notes": None})
    rows = [("tiles (256 px)", evaluation["tiles"], ""), ("mask cloud fraction", evaluation["cloud_fraction"], ""),
            ("mean brightness inside the mask (0..255)", evaluation["mean_brightness_cloud"],
             reference["mean_brightness_cloud"]),
            ("mean brightness outside the mask", evaluation["mean_brightness_clear"],
             reference["mean_brightness_clear"]),
            ("contrast (inside - outside)", evaluation["brightness_contrast"], reference["brightness_contrast"]),
            ("IoU of Otsu brightness threshold vs mask", evaluation["iou"], reference["iou"]),
            ("Otsu threshold", evaluation["threshold"], reference["threshold"]),
            ("precision / recall of the threshold", f"{evaluation['precision']} / {evaluation['recall']}",
             f"{reference['precision']} / {reference['recall']}")]
    m = card["machine"]
    lines = [text.rstrip("\n"), "", "Dagster command the recipe ran (in-process, same config and resources):", "",
             "```", card["dagster_command"], "```", "",
             f"- training wall time: {card['train_wall_seconds']} s (whole recipe {card['recipe_seconds_total']} s)",
             f"- machine: {m['cpu']}, {m['cpu_count']} cores, torch threads {m['torch_threads']} ({m['platform']}); "
             "CPU shared with other jobs, so times are noisy",
             "", "## Evaluation on held-out masks", "",
             "Held-out simulated products (other seeds, not trained on): "
             f"{', '.join(evaluation['held_out_products'])}; "
             f"their `gan_input` mask tiles with cover {evaluation['cover_range_percent']} %. Right column: the same "
             "figures for the simulator's own false-colour tiles of those masks (what a perfect model would reach).",
             "", "| figure | G_B output | simulator image |", "|---|---|---|"]
    lines += [f"| {name} | {ours} | {ref} |" for name, ours, ref in rows]
    lines += ["", "## Data and limits", "", card["notes"], ""]
    return "\n".join(lines)


def publish(train_dir: Path, out: Path, card: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Copy ``latest_net_G_B.pth`` and ``latest_net_G_A.pth`` from ``train_dir`` into ``out`` and write
    ``model_card.json`` (``card`` with the files' names, SHA-256 and sizes under ``files``) and
    ``model_card.md`` (:func:`card_markdown`) there; returns ``files``."""
    from cloudgan_core.gan.training import write_model_card

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("G_B", "G_A"):
        target = out / f"latest_net_{name}.pth"
        write_bytes(target, (train_dir / target.name).read_bytes())
        files[name] = {"path": target.name, "sha256": file_digest(target), "bytes": target.stat().st_size}
    full = {**card, "files": files}
    write_model_card(out, full)
    write_text(out / "model_card.md", card_markdown(full))
    return files


def training_products(keys: Sequence[str], specs: Sequence[ProductSpec]) -> list[dict[str, Any]]:
    """The card's list of training products: each key with its :class:`ProductSpec`."""
    return [{"key": k, **asdict(s)} for k, s in zip(keys, specs, strict=True)]
