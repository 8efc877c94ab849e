"""The Barlow Twins objective and the effective rank of representations.

Barlow Twins drives the cross-correlation matrix of two views' embeddings (each dimension standardised over
the batch) to the identity: its diagonal to 1 (the embedding is invariant to the choice of observations), its
off-diagonal to 0 (its dimensions are not redundant), the latter weighted by ``redundancy_weight`` (lambda).

The effective rank (exp of the entropy of the normalised singular values) tells how many dimensions the
representations really use: a collapsed encoder has 1, a perfectly spread one has all of them.
"""

from __future__ import annotations

import numpy as np
from keras import ops

#: Lambda of Barlow Twins: the weight of the D^2 - D off-diagonal terms against the D diagonal ones. 5e-3 is the
#: value for the wide (thousands of dimensions) projectors of image models; the time-series encoders apply the
#: loss to their representation of a few tens of dimensions, where 0.1 made the effective rank of the
#: representations rise in training on both generated landscapes (0.02 let it fall on the farmland one).
DEFAULT_REDUNDANCY_WEIGHT = 0.1
#: Added to the batch variance of each dimension, so a constant dimension gives 0 rather than NaN.
VARIANCE_EPSILON = 1e-9


def _standardised(embeddings):
    """Each column standardised over the batch (mean 0, biased standard deviation 1)."""
    mean = ops.mean(embeddings, axis=0, keepdims=True)
    variance = ops.mean(ops.square(embeddings - mean), axis=0, keepdims=True)
    return (embeddings - mean) / ops.sqrt(variance + VARIANCE_EPSILON)


def cross_correlation(first, second):
    """(D, D) cross-correlation of two (N, D) batches of embeddings of the same N samples."""
    count = ops.cast(ops.shape(first)[0], first.dtype)
    return ops.matmul(ops.transpose(_standardised(first)), _standardised(second)) / count


def barlow_twins_loss(first, second, redundancy_weight: float = DEFAULT_REDUNDANCY_WEIGHT):
    """sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2 for C the cross-correlation of the two views."""
    correlation = cross_correlation(ops.cast(first, "float32"), ops.cast(second, "float32"))
    diagonal = ops.diagonal(correlation)
    on_diagonal = ops.sum(ops.square(1.0 - diagonal))
    off_diagonal = ops.sum(ops.square(correlation)) - ops.sum(ops.square(diagonal))
    return on_diagonal + redundancy_weight * off_diagonal


def effective_rank(representations: np.ndarray) -> float:
    """exp(-sum p_k log p_k) with p_k = s_k / sum(s) the normalised singular values of (N, D) representations."""
    singular = np.linalg.svd(np.asarray(representations, np.float64), compute_uv=False)
    total = singular.sum()
    if total == 0:
        return 0.0
    shares = singular[singular > 0] / total
    return float(np.exp(-(shares * np.log(shares)).sum()))
