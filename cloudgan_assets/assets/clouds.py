"""Cloud assets: synthetic clouds from mask tiles (G_B), and training the generator."""

import json
from typing import Optional

import dagster as dg
import numpy as np
from pydantic import Field, model_validator

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import figures, preview
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, GeneratorModel, TorchDevice
from cloudgan_core.preview import grid
from cloudgan_core.stages import collect_training_tiles, generate_product_clouds
from cloudgan_core.tiles import check_cover_range

#: Kubernetes users (dagster-k8s run/step launchers) get one GPU for the generator step.
GPU_K8S_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}
#: The generator steps go to the Celery queue ``gpu`` (started on the GPU box with ``-q gpu``);
#: every other step goes to the default queue ``dagster``.
GPU_TAGS = {**GPU_K8S_TAGS, "dagster-celery/queue": "gpu"}


class CloudsConfig(dg.Config):
    min_cover: float = Field(10.0, description="mask tiles with cloud cover above this (percent) ...")
    max_cover: float = Field(95.0, description="... and at most this (percent) become clouds; "
                                               "0 <= min < max <= 100")

    @model_validator(mode="after")
    def _cover(self) -> "CloudsConfig":
        check_cover_range(self.min_cover, self.max_cover, what="min_cover/max_cover")
        return self


@dg.asset(partitions_def=products_partitions, group_name="clouds", deps=["sorted_tiles"], kinds={"pytorch"},
          pool="gpu", op_tags=GPU_TAGS,
          description="CycleGAN G_B turns each mask tile into a synthetic cloud tile (one pass per tile, batched, "
                      "on the device the TorchDevice resource names).")
@guarded
def synthetic_clouds(context: dg.AssetExecutionContext, config: CloudsConfig, storage: CloudGANStorage,
                     torch_device: TorchDevice, generator: GeneratorModel) -> dg.MaterializeResult:
    key = context.partition_key
    out = storage.path("synthetic_clouds", key)
    result = generate_product_clouds(
        storage.path("sorted_tiles", key), out, generator.model, cover_range=(config.min_cover, config.max_cover),
        device=torch_device.device, batch_size=torch_device.effective_batch_size(), precision=torch_device.precision,
        num_threads=torch_device.num_threads, model_name=generator.path.name, model_sha256=generator.sha256,
        progress=lambda done, total: context.log.debug(f"{done}/{total} tiles"))
    md = {**figures(result.figures), "path": dg.MetadataValue.path(str(out))}
    if result.figures["tiles"]:
        masks = np.load(out / "masks.npy", mmap_mode="r")
        clouds = np.load(out / "clouds.npy", mmap_mode="r")
        md["preview"] = preview(grid([[masks[i], clouds[i]] for i in range(min(6, len(masks)))], 112),
                                "mask | synthetic cloud")
    else:
        md["note"] = dg.MetadataValue.text("no mask tiles in the cover range for this product")
    return dg.MaterializeResult(metadata=md)


class TrainConfigDagster(dg.Config):
    partitions: list[str] = Field([], description="products partitions to train on; empty = all with sorted tiles")
    epochs: int = Field(5, description="epochs at the initial learning rate")
    epochs_decay: int = Field(5, description="epochs of linear learning-rate decay")
    ngf: int = Field(64, description="generator width (64 = reference resnet_9blocks)")
    n_blocks: int = Field(9, description="residual blocks")
    ndf: int = Field(64, description="discriminator width")
    batch_size: int = 1
    crop: Optional[int] = Field(None, description="cut tiles into crops of this size (multiple of 4)")
    max_land_fraction: float = Field(0.2, description="domain A: cloudy tiles over (mostly) ocean, as the original")
    max_tiles: Optional[int] = None
    max_steps_per_epoch: Optional[int] = None
    seed: int = 0
    output: Optional[str] = Field(None, description="training folder; default <storage>/train_generator")


@dg.asset(group_name="clouds", deps=["sorted_tiles"], kinds={"pytorch"}, pool="gpu", op_tags=GPU_TAGS,
          description="Trains the CycleGAN (A = cloudy false-colour tiles, B = their masks) on the selected "
                      "products; resumes from its last checkpoint; writes reference-format latest_net_G_A/G_B.pth "
                      "and a model card.")
@guarded
def train_generator(context: dg.AssetExecutionContext, config: TrainConfigDagster, storage: CloudGANStorage,
                    torch_device: TorchDevice) -> dg.MaterializeResult:
    from pathlib import Path

    from cloudgan_core.gan import TrainConfig, train_cyclegan

    root = storage.path("sorted_tiles")
    keys = config.partitions or sorted(p.name for p in root.glob("*") if (p / "gan_input").is_dir())
    images, masks, data = collect_training_tiles([root / k for k in keys], crop=config.crop,
                                                 max_land_fraction=config.max_land_fraction,
                                                 max_tiles=config.max_tiles, seed=config.seed)
    context.log.info(f"training on {len(images)} tiles of {images.shape[1]} px from {len(keys)} products")
    out = Path(config.output) if config.output else storage.path("train_generator")
    tc = TrainConfig(epochs=config.epochs, epochs_decay=config.epochs_decay, batch_size=config.batch_size,
                     ngf=config.ngf, ndf=config.ndf, n_blocks=config.n_blocks, seed=config.seed,
                     device=torch_device.device, max_steps_per_epoch=config.max_steps_per_epoch,
                     num_threads=torch_device.num_threads)
    command = ("dagster asset materialize -m cloudgan_assets.definitions --select train_generator --config-json "
               + json.dumps({"ops": {"train_generator": {"config": config.model_dump()}}}, sort_keys=True))
    result = train_cyclegan(images, masks, out, tc, log=context.log.info, data_description=data, command=command)
    last = result.history[-1] if result.history else {}
    md = {"epochs_done": result.epochs_done, "start_epoch": result.start_epoch, "seconds": round(result.seconds, 1),
          "device": result.device, "tiles": len(images), "G_B": dg.MetadataValue.path(str(result.generator_b)),
          "model_card": dg.MetadataValue.path(str(result.model_card)),
          **{f"last_{k}": v for k, v in last.items() if isinstance(v, (int, float))}}
    from cloudgan_core.gan import generate_clouds, load_generator

    held = masks[-4:]
    sample = generate_clouds(load_generator(result.generator_b), held, batch_size=4).clouds
    md["preview"] = preview(grid([[held[i], sample[i]] for i in range(len(held))], 96), "mask | G_B output")
    return dg.MaterializeResult(metadata=figures(md))
