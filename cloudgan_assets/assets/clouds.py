"""Cloud assets: synthetic clouds from mask tiles (G_B), and training the generator.

The work is done by :mod:`cloudgan_core.stages.synthetic_clouds` and
:mod:`cloudgan_core.stages.train_generator`.
"""

import json

import dagster as dg

from cloudgan_assets.guard import guarded
from cloudgan_assets.metadata import stage_metadata
from cloudgan_assets.partitions import products_partitions
from cloudgan_assets.resources import CloudGANStorage, GeneratorModel, TorchDevice
from cloudgan_core.stages import synthetic_clouds as clouds_stage
from cloudgan_core.stages import train_generator as train_stage
from cloudgan_core.stages.base import stored_partitions

#: Kubernetes users (dagster-k8s run/step launchers) get one GPU for the generator step.
GPU_K8S_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}
#: The generator steps go to the Celery queue ``gpu`` (started on the GPU box with ``-q gpu``);
#: every other step goes to the default queue ``dagster``.
GPU_TAGS = {**GPU_K8S_TAGS, "dagster-celery/queue": "gpu"}


class SyntheticCloudsConfig(dg.Config, clouds_stage.SyntheticCloudsConfig):
    """Which mask tiles become clouds (cover in percent), and the generator (gan or procedural)."""


@dg.asset(partitions_def=products_partitions, group_name="clouds", deps=["sorted_tiles"], kinds={"pytorch"},
          pool="gpu", op_tags=GPU_TAGS,
          description="Each mask tile becomes a cloud: optical thickness tau.npy + top height, and clouds.npy as a "
                      "picture. generator 'gan' (default): CycleGAN G_B (batched, on the TorchDevice resource's "
                      "device), its S3 brightness inverted to tau; 'procedural': a seeded fractal cloud.")
@guarded
def synthetic_clouds(context: dg.AssetExecutionContext, config: SyntheticCloudsConfig, storage: CloudGANStorage,
                     torch_device: TorchDevice, generator: GeneratorModel) -> dg.MaterializeResult:
    gan = config.generator == "gan"
    result = clouds_stage.build(
        storage.root_path, context.partition_key, config, model=generator.model if gan else None,
        model_name=generator.path.name if gan else "", model_sha256=generator.sha256 if gan else "",
        device=torch_device.device, batch_size=torch_device.effective_batch_size(),
        precision=torch_device.precision, num_threads=torch_device.num_threads,
        progress=lambda done, total: context.log.debug(f"{done}/{total} tiles"))
    return dg.MaterializeResult(metadata=stage_metadata(result, context))


class TrainGeneratorConfig(dg.Config, train_stage.TrainGeneratorConfig):
    """What the CycleGAN trains on and how."""


@dg.asset(group_name="clouds", deps=["sorted_tiles"], kinds={"pytorch"}, pool="gpu", op_tags=GPU_TAGS,
          description="Trains the CycleGAN (A = cloudy false-colour tiles, B = their masks) on the selected "
                      "products; resumes from its last checkpoint; writes reference-format latest_net_G_A/G_B.pth "
                      "and a model card.")
@guarded
def train_generator(context: dg.AssetExecutionContext, config: TrainGeneratorConfig, storage: CloudGANStorage,
                    torch_device: TorchDevice) -> dg.MaterializeResult:
    products = stored_partitions(storage.root_path, "sorted_tiles",
                                 context.instance.get_dynamic_partitions(products_partitions.name))
    command = ("dagster asset materialize -m cloudgan_assets.definitions --select train_generator --config-json "
               + json.dumps({"ops": {"train_generator": {"config": config.model_dump()}}}, sort_keys=True))
    result = train_stage.build(storage.root_path, config, products=products, device=torch_device.device,
                               num_threads=torch_device.num_threads, log=context.log.info, command=command)
    return dg.MaterializeResult(metadata=stage_metadata(result, context))
