"""Classification losses of the fine-tuning, on class logits and integer labels.

Focal loss (Lin et al., 2017) down-weights the pixels the classifier already gets right, by (1 - p)^gamma
with p the probability it gives the true class, so that rare or hard classes are not drowned by the easy
majority; gamma = 0 is the cross-entropy.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from decloud.core.errors import InvalidArgumentError

#: Loss names of the fine-tuning.
CLASSIFICATION_LOSSES = ("cross_entropy", "focal")
#: gamma of the focal loss by default (the value of its authors).
DEFAULT_FOCAL_GAMMA = 2.0


@keras.saving.register_keras_serializable(package="decloud_sits")
class SparseFocalLoss(keras.losses.Loss):
    """-(1 - p_t)^gamma log p_t of each sample, p_t the softmax probability of its true class."""

    def __init__(self, gamma: float = DEFAULT_FOCAL_GAMMA, name: str = "focal", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        log_probabilities = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        log_true = ops.sum(log_probabilities * ops.one_hot(labels, ops.shape(y_pred)[-1]), axis=-1)
        return -ops.power(1.0 - ops.exp(log_true), self.gamma) * log_true

    def get_config(self) -> dict:
        return {**super().get_config(), "gamma": self.gamma}


def classification_loss(name: str, gamma: float = DEFAULT_FOCAL_GAMMA) -> keras.losses.Loss:
    """The loss ``name`` (one of CLASSIFICATION_LOSSES) on logits."""
    if name == "cross_entropy":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if name == "focal":
        if gamma < 0:
            raise InvalidArgumentError(f"focal loss gamma must be 0 or more, not {gamma}")
        return SparseFocalLoss(gamma)
    raise InvalidArgumentError(f"unknown loss {name!r} (known: {', '.join(CLASSIFICATION_LOSSES)})")
