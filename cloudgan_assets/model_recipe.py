"""``python -m cloudgan_assets.model_recipe``: rebuild the bundled default generator in ``data/models/``.

The recipe, seeded and deterministic (up to CPU floating-point scheduling); the science is
:mod:`cloudgan_core.gan.recipe`, this entry runs the Dagster assets:

1. simulate ``--products`` ocean-heavy SL_1_RBT products for training and ``--holdout`` more
   with other seeds for evaluation into a work folder's inbox;
2. run the ``process_product`` job's assets up to ``sorted_tiles`` for each of them, in-process
   on a local Dagster instance kept in the work folder (its ``dagster.yaml`` is the project's
   ``deploy/dagster.local.yaml``; ``synthetic_clouds`` is left out: it needs the model this recipe makes);
3. materialize the ``train_generator`` asset on the training products only, with the config
   given here (a small ResNet generator; the Dagster CLI equivalent is written to the card);
4. evaluate the trained G_B on the held-out products' mask tiles and draw a mask | output grid;
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
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from cloudgan_core.gan import recipe
from cloudgan_core.storage import PROJECT_DIR


def _setup_environment(work: Path) -> dict[str, str]:
    """Point storage, inbox and the Dagster instance at ``work`` (before the definitions are imported),
    with the project's instance settings (:func:`cloudgan_assets.demo.install_instance_config`)."""
    from cloudgan_assets.demo import install_instance_config

    env = {"CLOUDGAN_STORAGE": str(work / "storage"), "CLOUDGAN_INBOX": str(work / "inbox"),
           "DAGSTER_HOME": str(work / "dagster_home")}
    os.environ.update(env)
    install_instance_config(Path(env["DAGSTER_HOME"]))
    return env


def _quiet(level: str = "WARNING") -> dict:
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def run_pipeline(defs, instance, keys: list[str]) -> None:
    """Materialize ``products`` .. ``sorted_tiles`` for each key not materialized yet."""
    import dagster as dg

    from cloudgan_assets.partitions import products_partitions

    instance.add_dynamic_partitions(products_partitions.name, keys)
    job = defs.resolve_job_def("process_product")
    selection = [dg.AssetKey(name) for name in recipe.PIPELINE_STAGES]
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
    """The ``train_generator`` asset config for this recipe; it trains into the asset's default folder,
    ``<storage>/train_generator``."""
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
    import torch

    from cloudgan_assets.definitions import defs
    from cloudgan_core.atomic import write_bytes
    from cloudgan_core.gan import load_generator

    started = time.perf_counter()
    train_specs = recipe.product_specs(args.products, recipe.TRAIN_SEED_BASE + args.seed)
    hold_specs = recipe.product_specs(args.holdout, recipe.HOLDOUT_SEED_BASE + args.seed)
    inbox = Path(env["CLOUDGAN_INBOX"])
    print(f"1. simulating {len(train_specs)} training + {len(hold_specs)} held-out products into {inbox}", flush=True)
    train_keys = recipe.simulate(inbox, train_specs)
    hold_keys = recipe.simulate(inbox, hold_specs)

    print("2. process_product (products .. sorted_tiles) for each product", flush=True)
    instance = dg.DagsterInstance.get()
    run_pipeline(defs, instance, train_keys + hold_keys)

    storage_root = Path(env["CLOUDGAN_STORAGE"])
    train_dir = storage_root / "train_generator"
    if train_dir.exists() and not args.resume:
        shutil.rmtree(train_dir)
    run_config = {"ops": {"train_generator": {"config": train_config(args, train_keys)}},
                  "resources": {"torch_device": {"config": {"device": args.device, "num_threads": args.threads}}}}
    cli = dagster_command(env, run_config)
    print(f"3. train_generator ({args.epochs}+{args.epochs_decay} epochs, <= {args.max_steps_per_epoch} steps of "
          f"{args.batch_size} x {args.crop} px)\n   CLI equivalent: {cli}", flush=True)
    t_train = time.perf_counter()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("train_generator")],
        run_config={**run_config, **_quiet("INFO")}, raise_on_error=False)
    train_wall = time.perf_counter() - t_train
    if not result.success:
        print("train_generator failed", file=sys.stderr)
        return 1
    card = json.loads((train_dir / "model_card.json").read_text())
    print(f"   trained in {train_wall:.1f} s", flush=True)

    print(f"4. evaluating G_B on the held-out products {hold_keys}", flush=True)
    torch.set_num_threads(args.threads)
    g_b = load_generator(train_dir / "latest_net_G_B.pth", "cpu")
    heldout = recipe.heldout_tiles(storage_root, hold_keys)
    evaluation = recipe.evaluate(g_b, heldout)
    print("   " + json.dumps(evaluation), flush=True)
    grid_path = write_bytes(work / "heldout_grid.png", recipe.heldout_grid_png(g_b, heldout))
    print(f"   mask | G_B output | simulator image grid: {grid_path}", flush=True)
    if args.no_copy:
        return 0

    out = args.out.resolve()
    print(f"5. writing the model and card to {out}", flush=True)
    card.update({
        "title": "CloudGAN default generator (bundled)",
        "summary": "G_B (latest_net_G_B.pth) turns a cloud mask tile (0/1 or 0/255; 256 x 256 in the pipeline) "
                   "into a synthetic cloudy false-colour tile (S5, S3, S1 reflectance as RGB). It is what the "
                   "synthetic_clouds asset uses when GeneratorModel.checkpoint is not set. G_A is the inverse "
                   "direction (cloud image -> mask), kept for cycle checks and resumed training.",
        "data": {**(card.get("data") or {}),
                 "source": "simulated SL_1_RBT products written by cloudgan_core.simulate.simulate_product "
                           "(regenerated by this recipe), not real Sentinel-3 data",
                 "training_products": recipe.training_products(train_keys, train_specs),
                 "product_shape_an": list(recipe.PRODUCT_SHAPE),
                 "pipeline": "process_product assets " + " -> ".join(recipe.PIPELINE_STAGES) + " (256-px tiles, "
                             "gan_input group: cover (10, 95] %, >= 90 % valid pixels)"},
        "command": recipe_command,
        "dagster_command": cli,
        "recipe_seconds_total": round(time.perf_counter() - started, 1),
        "train_wall_seconds": round(train_wall, 1),
        "machine": recipe.machine(args.threads),
        "evaluation": evaluation,
        "notes": recipe.NOTES,
    })
    files = recipe.publish(train_dir, out, card)
    for name, info in files.items():
        print(f"   {name}: {out / info['path']}  {info['bytes']} bytes  sha256 {info['sha256']}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
