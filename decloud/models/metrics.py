"""Image-quality metrics of estimates against reference images, counting only the pixels where the
reference is valid (not S2_NODATA), without tensorflow-addons.

Everything is computed in reflectance (prepared value x S2_MODEL_SCALE): MAE, MSE, PSNR (data range 1,
i.e. reflectance 0..1), SSIM (``tf.image.ssim``, 11x11 Gaussian window, per band) and SAM (spectral angle,
degrees). These are the Keras metrics of training (means over the batches' valid pixels or images); the scores
of evaluation, on hole pixels with PSNR from the pooled MSE, are :mod:`decloud.models.scores`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from decloud.core.constants import S2_MODEL_SCALE, S2_NODATA
from decloud.models.scores import MIN_MSE, PSNR_DATA_RANGE

#: Metric names: the default set, and the extra ones of ``--all_metrics``.
DEFAULT_METRICS = ("mae", "mse", "psnr")
ALL_METRICS = (*DEFAULT_METRICS, "ssim", "sam")


def masked_reflectances(y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
    """(reference, estimate, valid) as float32 reflectances, with both set to 0 where the reference is
    no-data so that those pixels add no error to any statistic."""
    y_true, y_pred = tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)
    valid = tf.not_equal(y_true, S2_NODATA)
    zeros = tf.zeros_like(y_true)
    return (
        tf.where(valid, y_true * S2_MODEL_SCALE, zeros),
        tf.where(valid, y_pred * S2_MODEL_SCALE, zeros),
        tf.cast(valid, tf.float32),
    )


def band_error_sums(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Per image and band (batch, bands): sums of absolute and squared errors, and valid pixel counts."""
    reference, estimate, valid = masked_reflectances(y_true, y_pred)
    error = estimate - reference
    return {
        "abs": tf.reduce_sum(tf.abs(error), axis=(1, 2)),
        "sq": tf.reduce_sum(tf.square(error), axis=(1, 2)),
        "count": tf.reduce_sum(valid, axis=(1, 2)),
    }


def psnr_from_mse(mse: Any) -> Any:
    mse = tf.cast(mse, tf.float32)
    return 10.0 * tf.math.log(PSNR_DATA_RANGE**2 / tf.maximum(mse, MIN_MSE)) / tf.math.log(10.0)


def ssim_per_band(y_true: Any, y_pred: Any) -> Any:
    """SSIM of each image and band (batch, bands); no-data pixels are equal (0) in both images."""
    reference, estimate, _ = masked_reflectances(y_true, y_pred)

    def per_band(images):
        return tf.expand_dims(tf.transpose(images, (0, 3, 1, 2)), -1)  # (batch, bands, rows, cols, 1)

    return tf.image.ssim(per_band(reference), per_band(estimate), max_val=PSNR_DATA_RANGE)


def sam_sums(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Per image: sum of the spectral angles (degrees) over pixels whose bands are all valid, and their count."""
    reference, estimate, valid = masked_reflectances(y_true, y_pred)
    norms = tf.norm(reference, axis=-1) * tf.norm(estimate, axis=-1)
    usable = tf.logical_and(tf.reduce_all(valid > 0, axis=-1), norms > 0)
    cosine = tf.clip_by_value(tf.reduce_sum(reference * estimate, axis=-1) / tf.where(usable, norms, 1.0), -1.0, 1.0)
    angles = tf.where(usable, tf.acos(cosine) * (180.0 / np.pi), 0.0)
    return tf.reduce_sum(angles, axis=(1, 2)), tf.reduce_sum(tf.cast(usable, tf.float32), axis=(1, 2))


# --- Batch statistics behind the Keras metrics: (sum, count) over the batch ----------------------


def _mae(y_true, y_pred):
    sums = band_error_sums(y_true, y_pred)
    return tf.reduce_sum(sums["abs"]), tf.reduce_sum(sums["count"])


def _mse(y_true, y_pred):
    sums = band_error_sums(y_true, y_pred)
    return tf.reduce_sum(sums["sq"]), tf.reduce_sum(sums["count"])


def _psnr(y_true, y_pred):
    """Mean over images of the PSNR of each image (all bands), images without valid pixels left out."""
    sums = band_error_sums(y_true, y_pred)
    count = tf.reduce_sum(sums["count"], axis=1)
    psnr = psnr_from_mse(tf.reduce_sum(sums["sq"], axis=1) / tf.maximum(count, 1.0))
    has_pixels = tf.cast(count > 0, tf.float32)
    return tf.reduce_sum(psnr * has_pixels), tf.reduce_sum(has_pixels)


def _ssim(y_true, y_pred):
    has_pixels = tf.cast(
        tf.reduce_any(tf.not_equal(tf.cast(y_true, tf.float32), S2_NODATA), axis=(1, 2, 3)), tf.float32
    )
    return tf.reduce_sum(tf.reduce_mean(ssim_per_band(y_true, y_pred), axis=1) * has_pixels), tf.reduce_sum(has_pixels)


def _sam(y_true, y_pred):
    angles, count = sam_sums(y_true, y_pred)
    return tf.reduce_sum(angles), tf.reduce_sum(count)


_BATCH_STATISTICS: dict[str, Callable[[Any, Any], tuple[Any, Any]]] = {
    "mae": _mae,
    "mse": _mse,
    "psnr": _psnr,
    "ssim": _ssim,
    "sam": _sam,
}


@keras.saving.register_keras_serializable(package="decloud")
class MaskedImageMetric(keras.metrics.Metric):
    """Running mean of one of :data:`ALL_METRICS` over the valid reference pixels (or images) seen so far."""

    def __init__(self, kind: str, name: str | None = None, **kwargs: Any) -> None:
        if kind not in _BATCH_STATISTICS:
            raise ValueError(f"unknown metric {kind!r} (known: {', '.join(_BATCH_STATISTICS)})")
        super().__init__(name=name or kind, **kwargs)
        self.kind = kind
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", aggregation="sum")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", aggregation="sum")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        total, count = _BATCH_STATISTICS[self.kind](y_true, y_pred)
        self.total.assign_add(total)
        self.count.assign_add(count)

    def result(self) -> Any:
        return tf.math.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind}


def keras_metrics(names: Sequence[str]) -> list[MaskedImageMetric]:
    return [MaskedImageMetric(name) for name in names]
