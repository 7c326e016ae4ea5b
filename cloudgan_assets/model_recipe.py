"""``python -m cloudgan_assets.model_recipe``: rebuild the bundled default generator in ``data/models/``.

The recipe, seeded and deterministic (up to CPU floating-point scheduling):

1. simulate ``--products`` ocean-heavy SL_1_RBT products for training and ``--holdout`` more
   with other seeds for evaluation (:func:`cloudgan_core.simulate.simulate_product`) into a work
   folder's inbox;
2. run the ``process_product`` job's assets up to ``sorted_tiles`` for each of them, in-process
   on a local Dagster instance kept in the work folder (``synthetic_clouds`` is left out: it needs
   the model this recipe makes);
3. materialize the ``train_generator`` asset on the training products only, with the config
   given here (a small ResNet generator; the Dagster CLI equivalent is written to the card);
4. evaluate the trained G_B on the held-out products' 256-px mask tiles in the generator's cover
   range with :func:`cloudgan_core.gan.evaluate_generator`, and draw a mask | output grid;
5. copy ``latest_net_G_B.pth`` (and ``latest_net_G_A.pth``) into ``--out`` and write
   ``model_card.json`` / ``model_card.md`` there.

The work folder (default ``<repo>/storage/model_recipe``) holds the products, the pipeline's
outputs, the Dagster instance and the training folder; products and sorted tiles already
materialized there are reused, the training folder is started afresh unless ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cloudgan_core.storage import PROJECT_DIR

#: Seeds of the training products start here; held-out products use HOLDOUT_SEED_BASE + i.
TRAIN_SEED_BASE = 5000
HOLDOUT_SEED_BASE = 7000
PRODUCT_SHAPE = (768, 1024)
LAND_FRACTION = 0.05
COVER_RANGE = (0.30, 0.60)
PIPELINE_ASSETS = ("products", "masks", "false_color", "tiles", "sorted_tiles")
EVAL_COVER = (10.0, 95.0)

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
    "bright grey; the shading sits near the edges. Evaluation: brightness = mean of the 3 output channels (0..255); IoU of "
    "(brightness > Otsu threshold over all generated pixels) against the mask, pooled over the "
    "held-out tiles.")


def product_specs(count: int, seed_base: int) -> list[dict[str, Any]]:
    """Seed, cloud cover and land fraction of ``count`` simulated products.

    Cover is drawn uniformly from :data:`COVER_RANGE` with a generator seeded by ``seed_base``,
    so the list depends only on its arguments.
    """
    rng = np.random.default_rng(seed_base)
    return [{"seed": seed_base + i, "cloud_cover": round(float(rng.uniform(*COVER_RANGE)), 4),
             "land_fraction": LAND_FRACTION} for i in range(count)]


def simulate(inbox: Path, specs: list[dict[str, Any]]) -> list[str]:
    """Write the products of ``specs`` into ``inbox`` as zips (kept when present); returns their ids."""
    from cloudgan_core.simulate import product_name, simulate_product
    from cloudgan_core.slstr.product import product_id

    inbox.mkdir(parents=True, exist_ok=True)
    keys = []
    for spec in specs:
        key = product_id(product_name(spec["seed"]))
        if not (inbox / f"{key}.zip").exists():
            simulate_product(inbox, seed=spec["seed"], rows=PRODUCT_SHAPE[0], cols=PRODUCT_SHAPE[1],
                             cloud_cover=spec["cloud_cover"], land_fraction=spec["land_fraction"], as_zip=True)
        keys.append(key)
    return keys


def _setup_environment(work: Path) -> dict[str, str]:
    """Point storage, inbox and the Dagster instance at ``work`` (before the definitions are imported)."""
    env = {"CLOUDGAN_STORAGE": str(work / "storage"), "CLOUDGAN_INBOX": str(work / "inbox"),
           "DAGSTER_HOME": str(work / "dagster_home")}
    os.environ.update(env)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


def _quiet(level: str = "WARNING") -> dict:
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def run_pipeline(defs, instance, keys: list[str]) -> None:
    """Materialize ``products`` .. ``sorted_tiles`` for each key not materialized yet."""
    import dagster as dg

    from cloudgan_assets.partitions import products_partitions

    instance.add_dynamic_partitions(products_partitions.name, keys)
    job = defs.resolve_job_def("process_product")
    selection = [dg.AssetKey(name) for name in PIPELINE_ASSETS]
    done = instance.get_materialized_partitions(dg.AssetKey("sorted_tiles"))
    for key in keys:
        if key in done:
            continue
        started = time.perf_counter()
        result = job.execute_in_process(partition_key=key, instance=instance, asset_selection=selection,
                                        run_config=_quiet(), raise_on_error=False)
        if not result.success:
            raise SystemExit(f"process_product failed for {key}; see the run in {instance.root_directory}")
        print(f"  sorted tiles of {key} ({time.perf_counter() - started:.1f} s)", flush=True)


def train_config(args: argparse.Namespace, keys: list[str]) -> dict[str, Any]:
    """The ``train_generator`` asset config (TrainConfigDagster fields) for this recipe; it trains into
    the asset's default folder, ``<storage>/train_generator``."""
    return {"partitions": keys, "epochs": args.epochs, "epochs_decay": args.epochs_decay, "ngf": args.ngf,
            "n_blocks": args.n_blocks, "ndf": args.ndf, "batch_size": args.batch_size, "crop": args.crop,
            "max_land_fraction": 0.2, "max_tiles": None, "max_steps_per_epoch": args.max_steps_per_epoch,
            "seed": args.seed, "output": None}


def dagster_command(env: dict[str, str], run_config: dict[str, Any]) -> str:
    """The shell command that materializes ``train_generator`` with ``run_config`` from the Dagster CLI."""
    def shown(value: str) -> str:  # paths inside the repository relative to it (run from its root)
        try:
            return '"$PWD"/' + shlex.quote(str(Path(value).relative_to(PROJECT_DIR)))
        except ValueError:
            return shlex.quote(value)

    prefix = " ".join(f"{k}={shown(v)}" for k, v in sorted(env.items()))
    return (f"{prefix} dagster asset materialize -m cloudgan_assets.definitions --select train_generator "
            f"--config-json {shlex.quote(json.dumps(run_config, sort_keys=True))}")


def heldout_tiles(storage_root: Path, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``gan_input`` mask tiles of ``keys`` with cover in :data:`EVAL_COVER` (percent, ``(lo, hi]``),
    and the products' own false-colour tiles at the same places."""
    from cloudgan_core.stages import sorted_tiles

    masks_out, images_out = [], []
    for key in keys:
        tiles = sorted_tiles.read(storage_root, key).gan_input
        masks = np.asarray(tiles.masks)
        cover = np.round(masks.reshape(len(masks), -1).mean(axis=1) * 100.0, 6)
        keep = (cover > EVAL_COVER[0]) & (cover <= EVAL_COVER[1])
        masks_out.append(masks[keep])
        images_out.append(np.asarray(tiles.images)[keep])
    return np.concatenate(masks_out), np.concatenate(images_out)


def reference_figures(images: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """The evaluation's figures for the simulator's own images of the held-out masks (an upper reference)."""
    from cloudgan_core.gan import otsu_threshold

    brightness = np.rint(images.astype(np.float32).mean(axis=-1)).astype(np.uint8)
    truth = masks.astype(bool)
    detected = brightness > otsu_threshold(brightness)
    inside, outside = float(brightness[truth].mean()), float(brightness[~truth].mean())
    return {"mean_brightness_cloud": round(inside, 4), "mean_brightness_clear": round(outside, 4),
            "brightness_contrast": round(inside - outside, 4),
            "iou": round(float((detected & truth).sum() / max((detected | truth).sum(), 1)), 4)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def card_markdown(card: dict[str, Any]) -> str:
    """The training card's Markdown plus the recipe's own sections (Dagster command, timing, evaluation)."""
    from cloudgan_core.gan.training import render_model_card

    evaluation = dict(card["evaluation"])
    reference = evaluation.pop("simulator_images_same_masks")
    text = render_model_card({**card, "evaluation": None, "notes": None})
    rows = [("tiles (256 px)", evaluation["tiles"], ""), ("mask cloud fraction", evaluation["cloud_fraction"], ""),
            ("mean brightness inside the mask (0..255)", evaluation["mean_brightness_cloud"],
             reference["mean_brightness_cloud"]),
            ("mean brightness outside the mask", evaluation["mean_brightness_clear"], reference["mean_brightness_clear"]),
            ("contrast (inside - outside)", evaluation["brightness_contrast"], reference["brightness_contrast"]),
            ("IoU of Otsu brightness threshold vs mask", evaluation["iou"], reference["iou"]),
            ("Otsu threshold", evaluation["threshold"], ""),
            ("precision / recall of the threshold", f"{evaluation['precision']} / {evaluation['recall']}", "")]
    lines = [text.rstrip("\n"), "", "Dagster command the recipe ran (in-process, same config and resources):", "",
             "```", card["dagster_command"], "```", "",
             f"- training wall time: {card['train_wall_seconds']} s (whole recipe {card['recipe_seconds_total']} s)",
             f"- machine: {card['machine']['cpu']}, {card['machine']['cpu_count']} cores, "
             f"torch threads {card['machine']['torch_threads']} ({card['machine']['platform']}); CPU shared with "
             "other jobs, so times are noisy",
             "", "## Evaluation on held-out masks", "",
             f"Held-out simulated products (other seeds, not trained on): {', '.join(evaluation['held_out_products'])}; "
             f"their `gan_input` mask tiles with cover {evaluation['cover_range_percent']} %. Right column: the same "
             "figures for the simulator's own false-colour tiles of those masks (what a perfect model would reach).",
             "", "| figure | G_B output | simulator image |", "|---|---|---|"]
    lines += [f"| {name} | {ours} | {ref} |" for name, ours, ref in rows]
    lines += ["", "## Data and limits", "", card["notes"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--work", type=Path, default=PROJECT_DIR / "storage" / "model_recipe",
                    help="work folder: inbox, storage, Dagster instance, training folder")
    ap.add_argument("--out", type=Path, default=PROJECT_DIR / "data" / "models", help="where the model and card go")
    ap.add_argument("--products", type=int, default=16, help="simulated training products")
    ap.add_argument("--holdout", type=int, default=2, help="simulated held-out products for the evaluation")
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--n-blocks", type=int, default=6)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--epochs-decay", type=int, default=5)
    ap.add_argument("--max-steps-per-epoch", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (TorchDevice.num_threads)")
    ap.add_argument("--device", default="cpu", help="TorchDevice.device for training")
    ap.add_argument("--resume", action="store_true", help="continue the training folder instead of starting afresh")
    ap.add_argument("--no-copy", action="store_true", help="train and evaluate only; leave --out alone")
    args = ap.parse_args(argv)
    recipe_command = "python -m cloudgan_assets.model_recipe " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))

    work = args.work.resolve()
    env = _setup_environment(work)
    import dagster as dg

    from cloudgan_assets.definitions import defs
    from cloudgan_core.gan import evaluate_generator, file_sha256, generate_clouds, load_generator
    from cloudgan_core.gan.training import write_model_card
    from cloudgan_core.preview import grid
    from cloudgan_core.atomic import write_bytes, write_text

    started = time.perf_counter()
    train_specs = product_specs(args.products, TRAIN_SEED_BASE + args.seed)
    hold_specs = product_specs(args.holdout, HOLDOUT_SEED_BASE + args.seed)
    inbox = Path(env["CLOUDGAN_INBOX"])
    print(f"1. simulating {len(train_specs)} training + {len(hold_specs)} held-out products into {inbox}", flush=True)
    train_keys = simulate(inbox, train_specs)
    hold_keys = simulate(inbox, hold_specs)

    print("2. process_product (products .. sorted_tiles) for each product", flush=True)
    instance = dg.DagsterInstance.get()
    run_pipeline(defs, instance, train_keys + hold_keys)

    storage_root = Path(env["CLOUDGAN_STORAGE"])
    train_dir = storage_root / "train_generator"
    if train_dir.exists() and not args.resume:
        shutil.rmtree(train_dir)
    cfg = train_config(args, train_keys)
    run_config = {"ops": {"train_generator": {"config": cfg}},
                  "resources": {"torch_device": {"config": {"device": args.device, "num_threads": args.threads}}}}
    cli = dagster_command(env, run_config)
    print(f"3. train_generator ({args.epochs}+{args.epochs_decay} epochs, <= {args.max_steps_per_epoch} steps of "
          f"{args.batch_size} x {args.crop} px)\n   CLI equivalent: {cli}", flush=True)
    t_train = time.perf_counter()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("train_generator")], run_config={**run_config, **_quiet("INFO")},
        raise_on_error=False)
    train_wall = time.perf_counter() - t_train
    if not result.success:
        print("train_generator failed", file=sys.stderr)
        return 1
    card = json.loads((train_dir / "model_card.json").read_text())
    print(f"   trained in {train_wall:.1f} s", flush=True)

    print(f"4. evaluating G_B on the held-out products {hold_keys}", flush=True)
    g_b = load_generator(train_dir / "latest_net_G_B.pth", "cpu")
    masks, images = heldout_tiles(storage_root, hold_keys)
    import torch

    torch.set_num_threads(args.threads)
    evaluation = evaluate_generator(g_b, masks, batch_size=8)
    evaluation = {"held_out_products": hold_keys, "tile_size": int(masks.shape[1]),
                  "cover_range_percent": f"({EVAL_COVER[0]:g}, {EVAL_COVER[1]:g}]",
                  **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in evaluation.items()},
                  "simulator_images_same_masks": reference_figures(images, masks)}
    print("   " + json.dumps(evaluation), flush=True)
    pick = np.linspace(0, len(masks) - 1, min(8, len(masks))).round().astype(int)
    clouds = generate_clouds(g_b, masks[pick], batch_size=8).clouds
    from PIL import Image
    import io

    png = io.BytesIO()
    Image.fromarray(grid([[masks[i], clouds[j], images[i]] for j, i in enumerate(pick)], 128)).save(png, format="PNG")
    grid_path = write_bytes(work / "heldout_grid.png", png.getvalue())
    print(f"   mask | G_B output | simulator image grid: {grid_path}", flush=True)
    if args.no_copy:
        return 0

    print(f"5. writing the model and card to {args.out}", flush=True)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("G_B", "G_A"):
        target = out / f"latest_net_{name}.pth"
        write_bytes(target, (train_dir / target.name).read_bytes())
        files[name] = {"path": target.name, "sha256": file_sha256(target), "bytes": target.stat().st_size}
    card.update({
        "title": "CloudGAN default generator (bundled)",
        "summary": "G_B (latest_net_G_B.pth) turns a cloud mask tile (0/1 or 0/255; 256 x 256 in the pipeline) "
                   "into a synthetic cloudy false-colour tile (S5, S3, S1 reflectance as RGB). It is what the "
                   "synthetic_clouds asset uses when GeneratorModel.checkpoint is not set. G_A is the inverse "
                   "direction (cloud image -> mask), kept for cycle checks and resumed training.",
        "files": files,
        "data": {**(card.get("data") or {}),
                 "source": "simulated SL_1_RBT products written by cloudgan_core.simulate.simulate_product "
                           "(regenerated by this recipe), not real Sentinel-3 data",
                 "training_products": [{"key": k, **s} for k, s in zip(train_keys, train_specs)],
                 "product_shape_an": list(PRODUCT_SHAPE),
                 "pipeline": "process_product assets " + " -> ".join(PIPELINE_ASSETS) + " (256-px tiles, "
                             "gan_input group: cover (10, 95] %, >= 90 % valid pixels)"},
        "command": recipe_command,
        "dagster_command": cli,
        "recipe_seconds_total": round(time.perf_counter() - started, 1),
        "train_wall_seconds": round(train_wall, 1),
        "machine": {"platform": platform.platform(), "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
                    "torch_threads": args.threads},
        "evaluation": evaluation,
        "notes": NOTES,
    })
    write_model_card(out, card)
    write_text(out / "model_card.md", card_markdown(card))
    for name, info in files.items():
        print(f"   {name}: {out / info['path']}  {info['bytes']} bytes  sha256 {info['sha256']}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
