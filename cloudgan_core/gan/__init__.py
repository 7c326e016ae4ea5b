"""CycleGAN generator for CloudGAN: networks, reference-format checkpoints, inference, training.

``G_B`` (mask -> cloud) is the generator used to make synthetic cloudy tiles; checkpoints are
compatible with the reference pytorch-CycleGAN-and-pix2pix implementation in both directions.
"""

from cloudgan_core.gan.checkpoint import CheckpointError, load_generator, save_generator
from cloudgan_core.gan.devices import DeviceError, resolve_device, resolve_precision
from cloudgan_core.gan.evaluate import MaskFigures, evaluate_generator, mask_figures
from cloudgan_core.gan.inference import (
    GenerationResult,
    InferenceError,
    generate_clouds,
    masks_to_input,
    output_to_uint8,
)
from cloudgan_core.gan.networks import NLayerDiscriminator, ResnetGenerator, count_parameters, init_weights
from cloudgan_core.gan.training import (
    TrainConfig,
    TrainingError,
    TrainResult,
    lr_factor,
    render_model_card,
    train_cyclegan,
    write_model_card,
)

__all__ = [
    "CheckpointError",
    "DeviceError",
    "GenerationResult",
    "InferenceError",
    "MaskFigures",
    "NLayerDiscriminator",
    "ResnetGenerator",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "count_parameters",
    "evaluate_generator",
    "generate_clouds",
    "init_weights",
    "load_generator",
    "lr_factor",
    "mask_figures",
    "masks_to_input",
    "output_to_uint8",
    "render_model_card",
    "resolve_device",
    "resolve_precision",
    "save_generator",
    "train_cyclegan",
    "write_model_card",
]
