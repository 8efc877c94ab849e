"""Seamless ``--keep_clear``: where clear pixels of the input are kept, the model's estimate is cross-faded
into them at the edges of the cloud mask instead of being cut along the mask. The one definition used by
every processor (through the streaming engine) and by the holes fed to same-date-truth models.

The cloud mask is first dilated by MASK_DILATION pixels: thin cloud edges and the fringes of shadows that
masks miss are estimated too. Beyond it, the weight of the estimate falls linearly to 0 over FADE_WIDTH
pixels (by Euclidean distance to the nearest cloudy pixel); kept pixels farther away are the input's own.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from decloud.core.constants import S2_NODATA

#: Pixels (10 m) by which the cloud mask grows before anything is kept.
MASK_DILATION = 2
#: Pixels (10 m) over which the estimate fades into the kept input beyond the dilated mask.
FADE_WIDTH = 4


def distance_to_clouds(cloudy: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) of each pixel to the nearest cloudy one (0 on clouds, inf without any)."""
    if not cloudy.any():
        return np.full(cloudy.shape, np.inf)
    return ndimage.distance_transform_edt(~cloudy)


def estimated_mask(cloudy: np.ndarray) -> np.ndarray:
    """The pixels wholly estimated: the cloud mask dilated by MASK_DILATION."""
    return distance_to_clouds(cloudy) <= MASK_DILATION


def estimate_weights(cloudy: np.ndarray) -> np.ndarray:
    """Weight (0-1, float32) of the estimate at each pixel: 1 on the dilated mask, falling linearly to 0 over
    FADE_WIDTH pixels beyond it (distance MASK_DILATION + k has weight 1 - k / (FADE_WIDTH + 1))."""
    excess = distance_to_clouds(cloudy) - MASK_DILATION
    return np.clip(1.0 - excess / (FADE_WIDTH + 1), 0.0, 1.0).astype(np.float32)


def at_scale(weights: np.ndarray, scale: int, shape: tuple[int, int]) -> np.ndarray:
    """Weights of a grid ``scale`` times coarser: the largest weight of each coarse pixel's fine pixels."""
    if scale == 1:
        return weights[: shape[0], : shape[1]]
    rows, cols = shape
    padded = np.zeros((rows * scale, cols * scale), dtype=weights.dtype)
    fine = weights[: rows * scale, : cols * scale]
    padded[: fine.shape[0], : fine.shape[1]] = fine
    return padded.reshape(rows, scale, cols, scale).max(axis=(1, 3))


def blend_kept(
    estimate: np.ndarray, kept: np.ndarray, kept_valid: np.ndarray, clear: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """The output (rows, cols, bands) int16 of ``--keep_clear``: ``weights`` x estimate + (1 - weights) x kept
    input where the input is valid; where the estimate is no-data (the model could not run), the input's clear
    pixels as they are; elsewhere the estimate."""
    w = weights[..., np.newaxis]
    mixed = np.rint(w * estimate + (1.0 - w) * kept).astype(np.int16)
    no_estimate = (estimate == S2_NODATA).any(axis=-1)
    mixed = np.where(no_estimate[..., np.newaxis], np.where(clear[..., np.newaxis], kept, estimate), mixed)
    return np.where(kept_valid[..., np.newaxis], mixed, estimate).astype(np.int16)
