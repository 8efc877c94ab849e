"""Training losses that ignore the pixels where the reference image is no-data (S2_NODATA).

Reference images come from cloud-free dates, but a few pixels of them may be no-data (outside the
swath, or clouds the sampler masked out): those must neither be learnt nor dilute the loss. Each sample's
loss is its mean error over its valid pixels, in reflectance; a sample without valid pixels counts 0.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from decloud.core.errors import InvalidArgumentError
from decloud.models.metrics import masked_reflectances


def _per_sample_mean(errors: Any, valid: Any) -> Any:
    return tf.reduce_sum(errors, axis=(1, 2, 3)) / tf.maximum(tf.reduce_sum(valid, axis=(1, 2, 3)), 1.0)


@keras.saving.register_keras_serializable(package="decloud")
class MaskedL1(keras.losses.Loss):
    """Mean absolute error over valid reference pixels (the default: robust to the odd bad pixel)."""

    def call(self, y_true: Any, y_pred: Any) -> Any:
        reference, estimate, valid = masked_reflectances(y_true, y_pred)
        return _per_sample_mean(tf.abs(estimate - reference), valid)


@keras.saving.register_keras_serializable(package="decloud")
class MaskedMSE(keras.losses.Loss):
    """Mean squared error over valid reference pixels."""

    def call(self, y_true: Any, y_pred: Any) -> Any:
        reference, estimate, valid = masked_reflectances(y_true, y_pred)
        return _per_sample_mean(tf.square(estimate - reference), valid)


LOSSES = {"masked_l1": MaskedL1, "masked_mse": MaskedMSE}


def get_loss(name: str) -> keras.losses.Loss:
    if name not in LOSSES:
        raise InvalidArgumentError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")
    return LOSSES[name](name=name)
