"""A fast strong CIFAR-10 network and its recipe, after airbench (Keller Jordan, 2024).

The network and the recipe follow airbench93 of github.com/KellerJordan/cifar10-airbench
(`airbench/lib_airbench93.py` and `airbench/utils.py`; the paper is "94% on CIFAR-10 in
3.29 Seconds on a Single GPU", arXiv:2404.00498), rewritten for Keras on a CPU:

- a frozen 2x2 first convolution initialised to whiten the training images' patches
  (eigenvectors of their 12x12 covariance, and their negatives: 24 filters), with a bias
  trained for the first 3 epochs only, then GELU;
- three blocks of conv 3x3, max-pool 2, batch norm, GELU, conv 3x3, batch norm, GELU
  (widths 64, 128, 128; convolutions without bias, initialised as identity on their
  first input channels; batch norm without scale, momentum 0.6), max-pool 3, a bias-free
  dense layer scaled by 1/9;
- Nesterov SGD (momentum 0.85) with airbench's decoupled learning rate 11.5 and weight
  decay 0.0153 per 1024 images, batch-norm biases at 64x the learning rate, a triangular
  schedule (0.2 -> 1 at 23% of the steps -> 0.07), label smoothing 0.2, batch 1024;
- lookahead: from epoch 4, every 5 steps the weights move to an exponential moving
  average whose decay grows with the cube of training progress;
- augmentation: random 2-pixel translation of reflect-padded images and the alternating
  flip (the whole set mirrored on every other epoch, after one random flip of each image);
- at test time, the mean over the image and its mirror image (`with_flip_average`, in the
  exported SavedModel). airbench's second level (1-pixel translations, 6 calls in all) is
  left out: it would triple the serving cost for about 0.2 points.

The network and its recipe are here; the training loop is `training.airbench_train`.
The exported model takes what every model of the store takes, float32 (N, 32, 32, 3) in
[0, 1], and normalises with the CIFAR-10 channel means and deviations itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import layers

__all__ = ["AIRBENCH_RECIPE", "AirbenchRecipe", "build_airbench", "build_airbench94", "whitening_kernel"]

logger = logging.getLogger(__name__)

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
WIDTHS = (64, 128, 128)
AIRBENCH94_WIDTHS = (64, 256, 256)
WHITEN_KERNEL = 2
BATCH_NORM_MOMENTUM = 0.6
OUTPUT_SCALE = 1 / 9


@dataclass(frozen=True)
class AirbenchRecipe:
    """airbench93's hyperparameters (`hyp` in lib_airbench93.py).

    Attributes:
        epochs: Passes over the training set.
        batch_size: Images per step.
        learning_rate: Per 1024 images, decoupled from the momentum.
        momentum: Nesterov momentum.
        weight_decay: Per 1024 images, decoupled from the learning rate.
        bias_scaler: Learning-rate multiplier of the batch-norm biases.
        label_smoothing: Of the cross-entropy targets.
        whiten_bias_epochs: Epochs the whitening layer's bias is trained before it is frozen.
        translate: Largest random shift, pixels.
        lookahead_from_epoch: First epoch (from 0) of the lookahead averaging.
        lookahead_every: Steps between two lookahead updates.
    """

    epochs: int = 11
    batch_size: int = 1024
    learning_rate: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3
    translate: int = 2
    lookahead_from_epoch: int = 3
    lookahead_every: int = 5


AIRBENCH_RECIPE = AirbenchRecipe()
"""The recipe `training.airbench_train.train_airbench` follows; `epochs` and `batch_size` are the Recipe's."""


def _dirac(shape: tuple[int, ...], dtype: str | None = None) -> tf.Tensor:
    """Keras's default initialiser with the first `in` filters set to the identity, as
    airbench's `Conv.reset_parameters` (`torch.nn.init.dirac_`): each block starts close to
    passing its input through."""
    kernel = keras.initializers.GlorotUniform()(shape, dtype=dtype)
    height, width, channels_in, channels_out = shape
    count = min(channels_in, channels_out)
    identity = np.zeros(shape, dtype=np.float32)
    identity[height // 2, width // 2, np.arange(count), np.arange(count)] = 1.0
    mask = np.ones(shape, dtype=np.float32)
    mask[:, :, :, :count] = 0.0
    return kernel * mask + identity


def _conv_block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=_dirac, name=f"{name}_conv1")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, epsilon=1e-12, scale=False, name=f"{name}_norm1")(x)
    x = layers.Activation("gelu", name=f"{name}_gelu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=_dirac, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, epsilon=1e-12, scale=False, name=f"{name}_norm2")(x)
    return layers.Activation("gelu", name=f"{name}_gelu2")(x)


def build_airbench(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    widths: tuple[int, int, int] = WIDTHS,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> keras.Model:
    """airbench93's network: whitening conv, 3 conv blocks, max-pool, scaled dense, softmax.

    Args:
        input_shape: (height, width, channels) in pixels; (32, 32, 3) for CIFAR-10,
            (28, 28, 1) for the MNIST sets (27 -> 13 -> 6 -> 3 pixels after the whitening
            and the blocks' pools, as 31 -> 15 -> 7 -> 3 for CIFAR-10).
        num_classes: Size of the softmax output.
        widths: Filters of the three blocks.
        mean: Per channel, in [0, 1], subtracted by the first layer; by default
            CIFAR-10's for 3 channels, 0.5 otherwise. `train_airbench` passes the training
            set's.
        std: Per channel, the divisor after it; by default CIFAR-10's, or 0.25.

    Returns:
        An uncompiled model from float32 (N, H, W, C) in [0, 1] to (N, classes)
        probabilities. For 32x32x3 and 10 classes: 570,296 parameters, of which the
        whitening kernel (288) is never trained, its bias (24) only in the first epochs,
        and the batch-norm statistics (1,280) are moving averages.

    Raises:
        ValueError: `mean` or `std` has not one value per channel.
    """
    channels = input_shape[-1]
    whiten_width = 2 * channels * WHITEN_KERNEL**2
    inputs = keras.Input(shape=input_shape)
    if mean is None:
        mean = CIFAR_MEAN if channels == 3 else (0.5,) * channels
    if std is None:
        std = CIFAR_STD if channels == 3 else (0.25,) * channels
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values, one per channel: {mean}, {std}")
    variance = np.square(np.asarray(std, dtype=np.float32))
    x = layers.Normalization(mean=np.asarray(mean, dtype=np.float32), variance=variance, name="normalize")(inputs)
    x = layers.Conv2D(whiten_width, WHITEN_KERNEL, padding="valid", name="whiten")(x)
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    for index, filters in enumerate(widths, start=1):
        x = _conv_block(x, filters, f"block{index}")
    x = layers.MaxPooling2D(3, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(num_classes, use_bias=False, name="logits")(x)
    x = layers.Rescaling(OUTPUT_SCALE, name="scale")(x)
    outputs = layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="airbench")


def build_airbench94(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> keras.Model:
    """airbench94's network: `build_airbench` with blocks of 64, 256 and 256 filters.

    The widths of `airbench/airbench94.py` (github.com/KellerJordan/cifar10-airbench), whose
    recipe is airbench93's at 9.9 epochs: 94% on CIFAR-10 there. About 2.2 times the
    multiply-adds of airbench93's network per image (118 M against 54 M for 32x32x3).

    Returns:
        As `build_airbench`; for 32x32x3 and 10 classes: 1,973,944 parameters.
    """
    return build_airbench(input_shape, num_classes, widths=AIRBENCH94_WIDTHS, mean=mean, std=std)


def whitening_kernel(images: np.ndarray, *, kernel_size: int = WHITEN_KERNEL, eps: float = 5e-4) -> np.ndarray:
    """The whitening filters of airbench's `init_whitening_conv` for normalised images.

    Args:
        images: float32 (N, H, W, C), normalised as the network's first layer does.
        kernel_size: Patch side in pixels.
        eps: Added to the eigenvalues before the inverse square root.

    Returns:
        float32 (k, k, C, 2 * C * k * k): the covariance's eigenvectors, largest
        eigenvalue first, scaled by 1/sqrt(eigenvalue + eps), then their negatives.
    """
    patches = tf.image.extract_patches(
        images, sizes=[1, kernel_size, kernel_size, 1], strides=[1, 1, 1, 1], rates=[1, 1, 1, 1], padding="VALID"
    )
    flat = tf.reshape(patches, [-1, patches.shape[-1]]).numpy().astype(np.float64)
    covariance = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + eps)
    channels = images.shape[-1]
    # extract_patches orders each patch (row, column, channel), as the kernel's first axes.
    filters = scaled.reshape(kernel_size, kernel_size, channels, -1)
    return np.concatenate([filters, -filters], axis=-1).astype(np.float32)
