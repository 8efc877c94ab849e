"""The grid of elementary patches (64x64 pixels at 10 m, one statistics pixel each) and per-patch
statistics computed window by window.

A raster of H x W pixels has ceil(H/64) x ceil(W/64) elementary patches; the last row and column may
be partial. Statistics rasters share the image's origin and have a pixel 64 times larger.
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.constants import PATCH_SIZE
from decloud.core.errors import InvalidArgumentError


def patch_grid_shape(height: int, width: int, patch_size: int = PATCH_SIZE) -> tuple[int, int]:
    """(rows, cols) of the elementary patch grid of a height x width raster."""
    return math.ceil(height / patch_size), math.ceil(width / patch_size)


def patch_grid_transform(transform: Affine, patch_size: int = PATCH_SIZE) -> Affine:
    """Geotransform of the statistics raster of an image with ``transform``."""
    return transform @ Affine.scale(patch_size)


def patch_window(window: Window, patch_size: int = PATCH_SIZE) -> Window:
    """The window of the statistics grid covered by an image ``window`` that starts on the patch grid."""
    if window.col_off % patch_size or window.row_off % patch_size:
        raise InvalidArgumentError(f"{window} does not start on the {patch_size}-pixel patch grid")
    rows, cols = patch_grid_shape(window.height, window.width, patch_size)
    return Window(window.col_off // patch_size, window.row_off // patch_size, cols, rows)


def count_per_patch(mask: np.ndarray, patch_size: int = PATCH_SIZE, outside: bool = False) -> np.ndarray:
    """Number of True pixels of a 2-D ``mask`` in each elementary patch, as uint16.

    ``mask`` must start on the patch grid. Where it ends inside a patch (image border), the missing
    pixels count as ``outside``: True for no-data counts (a partial patch is not a full, valid patch),
    False for counts of observed things such as clouds.
    """
    rows, cols = patch_grid_shape(*mask.shape, patch_size)
    padded = np.full((rows * patch_size, cols * patch_size), outside, dtype=bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    counts = padded.reshape(rows, patch_size, cols, patch_size).sum(axis=(1, 3), dtype=np.uint32)
    return counts.astype(np.uint16)


def pixels_per_patch(height: int, width: int, patch_size: int = PATCH_SIZE) -> np.ndarray:
    """Number of image pixels inside each elementary patch of a height x width window."""
    return count_per_patch(np.ones((height, width), dtype=bool), patch_size)


def percent_per_patch(mask: np.ndarray, patch_size: int = PATCH_SIZE) -> np.ndarray:
    """Share (0-100, float32) of the image pixels of each elementary patch where ``mask`` is True."""
    counts = count_per_patch(mask, patch_size).astype(np.float32)
    return 100.0 * counts / pixels_per_patch(*mask.shape, patch_size).astype(np.float32)
