"""CARN-style networks (Ahn et al. 2018, "cascading residual network"): residual units of group
convolutions, cascaded (every unit's and every block's output concatenated with all earlier ones and fused by
a 1x1 convolution), then sub-pixel upsampling (a convolution to factor^2 times the channels, rearranged into
a factor times finer grid). Width (``filters``), depth (``blocks`` of ``units``) and ``groups`` are
parameters. Group convolutions are written as per-group convolutions so that every runtime (TensorFlow on
CPU, ONNX) runs them."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from decloud.superres.upsampling import CubicUpsampling

#: Standard deviation of the initial weights of the last convolution: the network starts as the bicubic
#: upsampling it adds its output to.
HEAD_STDDEV = 1e-3
#: Side (10 m pixels) of the window of the local levels of the modulated sharpener, and their floor (reflectance:
#: no band is divided by less, so dark water and no-data stay finite).
LEVEL_WINDOW = 7
MIN_LEVEL = 0.01


@keras.saving.register_keras_serializable(package="decloud")
class PixelShuffle(keras.layers.Layer):
    """(batch, rows, cols, factor^2 c) -> (batch, factor rows, factor cols, c)."""

    def __init__(self, factor: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, tensor: Any) -> Any:
        return tf.nn.depth_to_space(tensor, self.factor)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        def scaled(size):
            return None if size is None else size * self.factor

        return (input_shape[0], scaled(input_shape[1]), scaled(input_shape[2]), input_shape[3] // self.factor**2)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


def _conv(filters: int, kernel: int, name: str, activation: str | None = None) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, kernel, padding="same", activation=activation, name=name)


def group_conv(tensor: Any, filters: int, groups: int, name: str, activation: str | None = None) -> Any:
    """A 3x3 convolution in ``groups`` independent groups of channels."""
    if groups == 1:
        return _conv(filters, 3, name, activation)(tensor)
    size = tensor.shape[-1] // groups
    parts = [
        _conv(filters // groups, 3, f"{name}_g{index}", activation)(tensor[..., index * size : (index + 1) * size])
        for index in range(groups)
    ]
    return keras.layers.Concatenate(name=f"{name}_concat")(parts)


def residual_unit(tensor: Any, filters: int, groups: int, name: str) -> Any:
    """Efficient residual unit: group conv, ReLU, group conv, 1x1 conv, added to the input, ReLU."""
    hidden = group_conv(tensor, filters, groups, f"{name}_a", "relu")
    hidden = group_conv(hidden, filters, groups, f"{name}_b", "relu")
    hidden = _conv(filters, 1, f"{name}_c")(hidden)
    return keras.layers.ReLU(name=f"{name}_relu")(keras.layers.Add(name=f"{name}_add")([tensor, hidden]))


def cascade(tensor: Any, filters: int, steps: int, step: Any, name: str) -> Any:
    """``steps`` applications of ``step``, each fed the 1x1 fusion of the concatenation of all earlier outputs."""
    history, current = tensor, tensor
    for index in range(steps):
        output = step(current, f"{name}{index}")
        history = keras.layers.Concatenate(name=f"{name}{index}_cat")([history, output])
        current = _conv(filters, 1, f"{name}{index}_fuse")(history)
    return current


def carn_features(tensor: Any, filters: int, blocks: int, units: int, groups: int) -> Any:
    """Entry convolution and the cascade of cascading blocks of residual units."""
    if filters % groups:
        raise ValueError(f"filters ({filters}) must be a multiple of groups ({groups})")
    entry = _conv(filters, 3, "entry")(tensor)

    def block(features: Any, name: str) -> Any:
        return cascade(features, filters, units, lambda x, unit: residual_unit(x, filters, groups, unit), f"{name}u")

    return cascade(entry, filters, blocks, block, "block")


def head(features: Any, bands: int, name: str) -> Any:
    return keras.layers.Conv2D(
        bands, 3, padding="same", name=name, kernel_initializer=keras.initializers.RandomNormal(stddev=HEAD_STDDEV)
    )(features)


def carn_upsampler(bands: int, factor: int, filters: int, blocks: int, units: int, groups: int) -> keras.Model:
    """Reflectances (batch, rows, cols, bands) -> (batch, factor rows, factor cols, bands): the bicubic
    upsampling plus the residual the network estimates."""
    images = keras.Input((None, None, bands), name="reflectance")
    features = carn_features(images, filters, blocks, units, groups)
    for index in range(factor.bit_length() - 1):  # x2 steps: one for x2, two for x4
        features = _conv(4 * filters, 3, f"upsample{index}", "relu")(features)
        features = PixelShuffle(2, name=f"shuffle{index}")(features)
    residual = head(features, bands, "residual")
    upsampled = CubicUpsampling(factor, name="bicubic")(images)
    return keras.Model(images, keras.layers.Add(name="estimate")([upsampled, residual]), name="carn_upsampler")


@keras.saving.register_keras_serializable(package="decloud")
class LocalLevel(keras.layers.Layer):
    """Mean of each band over a LEVEL_WINDOW square around each pixel (the pixels inside the image only), at
    least MIN_LEVEL: the local brightness that :func:`carn_sharpener` divides and multiplies by."""

    def call(self, images: Any) -> Any:
        return keras.ops.maximum(keras.ops.average_pool(images, LEVEL_WINDOW, 1, "same"), MIN_LEVEL)


@keras.saving.register_keras_serializable(package="decloud")
class Ratio(keras.layers.Layer):
    """[numerator, denominator] -> numerator / denominator."""

    def call(self, pair: Any) -> Any:
        return keras.ops.divide(pair[0], pair[1])


def carn_sharpener(
    guide_bands: int, bands: int, filters: int, blocks: int, units: int, groups: int, modulated: bool = True
) -> keras.Model:
    """(10 m guide bands, 20 m bands already upsampled to 10 m) -> the 20 m bands sharpened at 10 m: the
    upsampled bands plus the residual the network estimates from all of them.

    ``modulated``: the network sees every band divided by its local level (:class:`LocalLevel`) and its residual
    is multiplied by the local level of the band it sharpens, so the detail it adds is relative to each band's
    own brightness (high-pass modulation). Without it, over snow (visible bands 5 to 10 times brighter than in
    any usual training scene, the SWIR bands dark) the network copied the guide's large contrasts into B11 and
    B12."""
    guide = keras.Input((None, None, guide_bands), name="guide")
    coarse = keras.Input((None, None, bands), name="upsampled")
    if not modulated:
        stacked = keras.layers.Concatenate(name="stack")([guide, coarse])
        residual = head(carn_features(stacked, filters, blocks, units, groups), bands, "residual")
    else:
        coarse_level = LocalLevel(name="upsampled_level")(coarse)
        relative = [
            Ratio(name="guide_relative")([guide, LocalLevel(name="guide_level")(guide)]),
            Ratio(name="upsampled_relative")([coarse, coarse_level]),
        ]
        stacked = keras.layers.Concatenate(name="stack")(relative)
        relative_residual = head(carn_features(stacked, filters, blocks, units, groups), bands, "residual")
        residual = keras.layers.Multiply(name="modulated_residual")([relative_residual, coarse_level])
    return keras.Model([guide, coarse], keras.layers.Add(name="estimate")([coarse, residual]), name="carn_sharpener")
