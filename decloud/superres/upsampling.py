"""Bicubic upsampling by an integer factor as a Keras layer made of plain convolutions, so that the same
arithmetic runs in a SavedModel, in an ONNX export and in the engine's adapters (a resize operator differs
between runtimes at the borders and in its cubic coefficient).

Cubic convolution of Keys (a = -0.5), pixel centres aligned as in GDAL, rasterio and ``tf.image.resize``
(output pixel ``i`` samples input position ``(i + 0.5) / factor - 0.5``), the image extended by repeating
its edge pixels.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

#: Keys' cubic convolution coefficient (the "bicubic" of GDAL and of tf.image.resize).
CUBIC_A = -0.5
#: Input pixels on each side of a phase's kernel (offsets -2..2 cover |shift| < 0.5 with 4 non-zero taps).
TAPS_RADIUS = 2


def keys_cubic(distance: np.ndarray, a: float = CUBIC_A) -> np.ndarray:
    """Keys' cubic convolution kernel."""
    x = np.abs(np.asarray(distance, dtype=np.float64))
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def phase_weights(factor: int) -> np.ndarray:
    """(factor, 5) weights of input pixels k-2..k+2 for the output pixels ``factor * k + p``."""
    shifts = (2 * np.arange(factor) + 1) / (2 * factor) - 0.5
    taps = np.arange(-TAPS_RADIUS, TAPS_RADIUS + 1)
    return keys_cubic(shifts[:, None] - taps[None, :])


@keras.saving.register_keras_serializable(package="decloud")
class CubicUpsampling(keras.layers.Layer):
    """(batch, rows, cols, channels) -> (batch, factor rows, factor cols, channels), bicubic."""

    def __init__(self, factor: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)
        weights = phase_weights(self.factor)
        # One 5x5 kernel per (row phase, column phase), in the channel order depth_to_space expects.
        kernels = np.einsum("pi,qj->ijpq", weights, weights).reshape(5, 5, 1, self.factor**2)
        self._kernels = kernels.astype(np.float32)

    def call(self, images: Any) -> Any:
        shape = tf.shape(images)
        batch, rows, cols, channels = shape[0], shape[1], shape[2], shape[3]
        planes = tf.reshape(tf.transpose(images, [0, 3, 1, 2]), tf.stack([batch * channels, rows, cols, 1]))
        planes = _repeat_edges(planes, TAPS_RADIUS)
        phases = tf.nn.conv2d(planes, tf.constant(self._kernels), 1, "VALID")
        fine = tf.nn.depth_to_space(phases, self.factor)
        fine = tf.reshape(fine, tf.stack([batch, channels, rows * self.factor, cols * self.factor]))
        return tf.transpose(fine, [0, 2, 3, 1])

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        def scaled(size):
            return None if size is None else size * self.factor

        return (input_shape[0], scaled(input_shape[1]), scaled(input_shape[2]), input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


def _repeat_edges(images: tf.Tensor, width: int) -> tf.Tensor:
    """Images extended by ``width`` copies of their edge rows and columns (slices and concatenations only,
    which every runtime has)."""
    top, bottom = images[:, :1], images[:, -1:]
    images = tf.concat([top] * width + [images] + [bottom] * width, axis=1)
    left, right = images[:, :, :1], images[:, :, -1:]
    return tf.concat([left] * width + [images] + [right] * width, axis=2)


def upsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Numpy (batch, rows, cols, channels) float32 upsampled with :class:`CubicUpsampling`."""
    return np.asarray(CubicUpsampling(factor)(tf.convert_to_tensor(images, tf.float32)))
