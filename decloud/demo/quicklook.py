"""The demo's quicklook: three panels side by side, cloudy input | reconstruction | cloud-free reference, in
natural colours (RGB = B4 B3 B2) with one stretch for the three, so that a colour means the same reflectance
in every panel. The stretch goes from the 2nd to the 98th percentile of the reference's values, the same for
the three bands so that the colours keep their balance (clouds, brighter, saturate to white); no-data is
black; white gaps separate the panels."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling

from decloud.core.raster import open_raster, read_window, write_png
from decloud.preprocessing.constants import S2_BANDS_10M, S2_NODATA

RGB_BANDS = ("B4", "B3", "B2")
STRETCH_PERCENTILES = (2.0, 98.0)
#: Width of the white gap between two panels, pixels.
PANEL_GAP = 8
#: Longest side of a panel: larger images are read decimated (nearest neighbour), never whole.
MAX_PANEL_SIDE = 1024


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """The (rows, cols, 3) int16 B4 B3 B2 bands of a 10 m stack, decimated to at most MAX_PANEL_SIDE a side."""
    with open_raster(path) as dataset:
        factor = math.ceil(max(dataset.height, dataset.width) / MAX_PANEL_SIDE)
        shape = (3, math.ceil(dataset.height / factor), math.ceil(dataset.width / factor))
        indexes = [S2_BANDS_10M.index(band) + 1 for band in RGB_BANDS]
        rgb = read_window(dataset, None, indexes, out_shape=shape, resampling=Resampling.nearest)
    return np.moveaxis(rgb, 0, -1)


def stretch_limits(rgb: np.ndarray) -> tuple[float, float]:
    """The STRETCH_PERCENTILES (low, high) of the values of the valid pixels of ``rgb``, all bands together."""
    valid = (rgb != S2_NODATA).all(axis=-1)
    low, high = np.percentile(rgb[valid].astype(np.float64), STRETCH_PERCENTILES)
    return float(low), float(max(high, low + 1.0))


def to_bytes(rgb: np.ndarray, low: float, high: float) -> np.ndarray:
    """``rgb`` stretched linearly from [low, high] to [0, 255], no-data black."""
    scaled = np.clip(np.rint((rgb - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)
    return np.where((rgb == S2_NODATA).any(axis=-1, keepdims=True), np.uint8(0), scaled)


def write_quicklook(
    cloudy: str | os.PathLike[str],
    reconstruction: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    png: str | os.PathLike[str],
) -> Path:
    """Write the three-panel PNG of one date (the three images on the same grid); return its path."""
    images = [read_rgb(path) for path in (cloudy, reconstruction, reference)]
    low, high = stretch_limits(images[2])
    rows, cols = images[0].shape[:2]
    canvas = np.full((rows, 3 * cols + 2 * PANEL_GAP, 3), 255, dtype=np.uint8)
    for index, image in enumerate(images):
        start = index * (cols + PANEL_GAP)
        canvas[:, start : start + cols] = to_bytes(image, low, high)
    write_png(canvas, png)
    return Path(png)
