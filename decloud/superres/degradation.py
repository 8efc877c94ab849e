"""The Wald protocol's degradation: what a sensor with ``factor`` times larger pixels would have seen.

With no higher-resolution reference, a network learns x``factor`` from images degraded by ``factor``: a
Gaussian blur whose transfer function equals Sentinel-2's modulation transfer function (MTF) at the
Nyquist frequency of the coarse grid, then decimation (one pixel in ``factor``, centred in its block).

A Gaussian PSF of standard deviation ``sigma`` (fine pixels) has the transfer function
``exp(-2 pi^2 sigma^2 f^2)``; setting it to ``mtf`` at the coarse Nyquist frequency ``f = 1 / (2 factor)``
cycles per fine pixel gives ``sigma = factor sqrt(-2 ln mtf) / pi``.

The degradation is applied in the training input pipeline (:func:`degrade`, TensorFlow), not when the
records are written: records hold the real prepared values of a clear acquisition, traceable to their
tile and patch, and the same records serve x2, x4 and guided sharpening, or another MTF, without being
sampled again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

#: Sentinel-2's MTF at Nyquist, one value for every band: the Sentinel-2 MSI requirement lies between
#: 0.15 and 0.3 and the measured values are near 0.3 for most bands.
S2_MTF_AT_NYQUIST = 0.3
#: Half-width of the Gaussian kernel, in standard deviations.
KERNEL_RADIUS_SIGMAS = 3


def mtf_sigma(factor: int, mtf: float = S2_MTF_AT_NYQUIST) -> float:
    """Standard deviation (fine pixels) of the Gaussian whose transfer function is ``mtf`` at the Nyquist
    frequency of a grid ``factor`` times coarser."""
    return factor * math.sqrt(-2.0 * math.log(mtf)) / math.pi


def gaussian_kernel(sigma: float, shift: float = 0.0) -> np.ndarray:
    """Normalised 1-D Gaussian sampled at the offsets ``j - radius - shift`` (j = 0, 1...), covering
    KERNEL_RADIUS_SIGMAS standard deviations on each side of its centre."""
    radius = max(1, math.ceil(KERNEL_RADIUS_SIGMAS * sigma))
    offsets = np.arange(-radius, radius + 1 + math.ceil(shift), dtype=np.float64) - shift
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def degrade(images: Any, factor: int, mtf: float = S2_MTF_AT_NYQUIST) -> tf.Tensor:
    """Images (batch, rows, cols, channels), rows and cols multiples of ``factor``, blurred by the MTF
    Gaussian (borders mirrored) and decimated: (batch, rows / factor, cols / factor, channels).

    Each coarse pixel is the blurred value at the centre of its ``factor`` x ``factor`` block of fine
    pixels, so that it covers its block as a real coarse pixel would (for an even factor the centre lies
    between fine pixels: the Gaussian is then sampled half a pixel off)."""
    images = tf.convert_to_tensor(images, tf.float32)
    shift = 0.5 if factor % 2 == 0 else 0.0
    kernel = gaussian_kernel(mtf_sigma(factor, mtf), shift)
    before = (len(kernel) - 1) // 2  # blurred[i] is centred on fine position i + shift
    after = len(kernel) - 1 - before
    channels = images.shape[-1]
    padded = tf.pad(images, [[0, 0], [before, after], [before, after], [0, 0]], mode="SYMMETRIC")
    rows = tf.constant(np.tile(kernel[:, None, None, None], (1, 1, channels, 1)), tf.float32)
    cols = tf.constant(np.tile(kernel[None, :, None, None], (1, 1, channels, 1)), tf.float32)
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, cols, [1, 1, 1, 1], "VALID")
    start = (factor - 1) // 2  # block centre s + (factor - 1) / 2 = position start + shift of block s
    return blurred[:, start::factor, start::factor, :]
