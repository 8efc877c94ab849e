"""Per-pixel time-series encoders (Keras 3): an observation is its bands plus its day number; a backbone turns a
variable-length, possibly padded sequence of observations into one representation vector.

- ``mlp``: each observation through the same MLP, then the mean over the real observations;
- ``transformer``: self-attention over the observations (padding masked out of the keys), then the mean;
- ``cnn``: 1-D convolutions along the real observations in date order (padding moved to the end and zeroed
  after every layer, so it never enters a real observation's receptive field), then the mean.

Both take the prepared values (reflectance x 10000) and standardise them inside the graph with the band mean
and standard deviation of the training store, so a saved encoder is fed raw store values. Inputs:
``values`` (batch, length, C) float32, ``doys`` (batch, length) float32 (decloud.sits.dates), ``mask``
(batch, length) float32, 1 on real observations.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

from decloud.core.errors import InvalidArgumentError

#: Backbone names.
BACKBONES = ("mlp", "transformer", "cnn")
#: Observations seen by one convolution of the ``cnn`` backbone.
CNN_KERNEL = 3
#: Shortest and longest periods, in days, of the sinusoidal day-number encoding (geometric between them): from
#: about the gap between two clear dates to more than a season crossing the new year (day numbers up to ~730).
#: A period of a few days would make its sinusoid an arbitrary function of irregular dates: noise the encoder
#: would first have to learn to ignore (with periods from 1 day, pretraining gave a poorer linear probe).
DOY_MIN_PERIOD = 16.0
DOY_MAX_PERIOD = 1000.0


@keras.saving.register_keras_serializable(package="decloud_sits")
class Standardise(layers.Layer):
    """(values - mean) / std with fixed per-band constants."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.mean, self.std = [float(v) for v in mean], [float(v) if v > 0 else 1.0 for v in std]

    def call(self, values):
        return (values - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="decloud_sits")
class DayOfYearEncoding(layers.Layer):
    """Sinusoids of the day number: sin and cos of doy x 2 pi / period, ``dim`` / 2 periods geometric from
    DOY_MIN_PERIOD to DOY_MAX_PERIOD days."""

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim = dim

    def call(self, doys):
        half = self.dim // 2
        periods = DOY_MIN_PERIOD * (DOY_MAX_PERIOD / DOY_MIN_PERIOD) ** (np.arange(half) / max(half - 1, 1))
        angles = ops.expand_dims(doys, -1) * (2 * np.pi / periods).astype(np.float32)
        return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim}


@keras.saving.register_keras_serializable(package="decloud_sits")
class MaskedMean(layers.Layer):
    """Mean over the sequence axis of the positions where the mask is 1 (0 when there is none)."""

    def call(self, sequence, mask):
        weights = ops.expand_dims(mask, -1)
        return ops.sum(sequence * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="decloud_sits")
class KeyPaddingMask(layers.Layer):
    """(batch, length, length) attention mask: every query may attend to the real observations only."""

    def call(self, mask):
        keys = ops.expand_dims(mask > 0.5, 1)
        return ops.logical_and(ops.ones_like(ops.expand_dims(mask > 0.5, 2)), keys)


@keras.saving.register_keras_serializable(package="decloud_sits")
class RealFirst(layers.Layer):
    """Reorders each sequence so its real observations come first, in their order, and the padding last: a
    convolution then sees the real observations as neighbours wherever the padding was (the maps mask invalid
    dates in the middle of a series, the views put padding at the end)."""

    def call(self, sequence, mask):
        length = ops.shape(mask)[1]
        positions = ops.cast(ops.arange(length), mask.dtype)
        order = ops.argsort((1.0 - mask) * ops.cast(length, mask.dtype) + positions, axis=1)
        return ops.take_along_axis(sequence, ops.expand_dims(order, -1), axis=1), ops.take_along_axis(mask, order, 1)


def _convolutions(x, mask, dim: int, depth: int):
    """``depth`` residual 1-D convolutions over the real observations (``cnn`` backbone)."""
    x, mask = RealFirst()(x, mask)
    keep = layers.Reshape((-1, 1))(mask)
    x = layers.Multiply()([x, keep])
    for _ in range(depth):
        convolved = layers.Conv1D(dim, CNN_KERNEL, padding="same", activation="relu")(x)
        x = layers.Multiply()([layers.LayerNormalization()(x + convolved), keep])
    return x, mask


def build_encoder(
    backbone: str,
    *,
    bands: int,
    band_mean: Sequence[float],
    band_std: Sequence[float],
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
) -> keras.Model:
    """The encoder ``backbone`` (one of BACKBONES) producing (batch, dim) representations."""
    values = keras.Input((None, bands), name="values")
    doys = keras.Input((None,), name="doys")
    mask = inputs_mask = keras.Input((None,), name="mask")
    observation = layers.Concatenate()([Standardise(band_mean, band_std)(values), DayOfYearEncoding(dim)(doys)])
    x = layers.Dense(dim)(observation)
    if backbone == "mlp":
        for _ in range(depth):
            x = layers.Dense(dim, activation="relu")(x)
    elif backbone == "transformer":
        attention_mask = KeyPaddingMask()(mask)
        for _ in range(depth):
            attended = layers.MultiHeadAttention(heads, dim // heads)(x, x, attention_mask=attention_mask)
            x = layers.LayerNormalization()(x + attended)
            feed = layers.Dense(dim, activation="relu")(layers.Dense(2 * dim, activation="relu")(x))
            x = layers.LayerNormalization()(x + feed)
    elif backbone == "cnn":
        x, mask = _convolutions(x, mask, dim, depth)
    else:
        raise InvalidArgumentError(f"unknown backbone {backbone!r} (known: {', '.join(BACKBONES)})")
    representation = layers.Dense(dim)(MaskedMean()(x, mask))
    return keras.Model({"values": values, "doys": doys, "mask": inputs_mask}, representation, name=f"sits_{backbone}")


def build_projector(dim: int, width: int) -> keras.Sequential:
    """The projector of Barlow Twins: three layers, batch normalisation and ReLU between them; width 0: none (the
    loss then decorrelates the representation itself)."""
    if width == 0:
        return keras.Sequential([keras.Input((dim,)), layers.Identity()], name="projector")
    return keras.Sequential(
        [
            keras.Input((dim,)),
            layers.Dense(width),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Dense(width),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Dense(width),
        ],
        name="projector",
    )
