"""The demo's quicklook: four panels side by side, cloudy input | reconstruction | truth | absolute error, each
titled, the error with its colour scale below it.

The three images are in natural colours (RGB = B4 B3 B2) with one stretch, so that a colour means the same
reflectance in every panel: from the 2nd to the 98th percentile of the truth's values, the same for the three
bands so that the colours keep their balance (clouds, brighter, saturate to white); no-data is black. The error
panel is the mean over the 10 m bands of |reconstruction - truth| (reflectance) on a fixed scale from 0 to
ERROR_SCALE (larger errors saturate), so that two runs compare at a glance; no-data is black there too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling

from decloud.core.constants import S2_BANDS_10M, S2_MODEL_SCALE, S2_NODATA
from decloud.core.raster import open_raster, read_window, write_png

RGB_BANDS = ("B4", "B3", "B2")
STRETCH_PERCENTILES = (2.0, 98.0)
TITLES = ("cloudy input", "reconstruction", "truth", "absolute error")
#: Top of the error scale, reflectance (mean over the 10 m bands), and its labelled ticks.
ERROR_SCALE = 0.05
ERROR_TICKS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05)
#: The error colours: the inferno colour map's colours at 0, 1/4, 1/2, 3/4 and 1, interpolated linearly.
ERROR_COLOURS = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], dtype=np.float64)
#: Width of the white gap between two panels, height of the title strip above them and of the colour scale strip
#: below them (bar and labels), and height of the colour bar, pixels.
PANEL_GAP, HEADER, FOOTER, BAR = 8, 22, 40, 12
FONT_SIZE = 14
#: Cloudy share of the date the demo shows.
SHOWCASE_CLOUDY_SHARE = 0.5
#: Longest side of a panel: larger images are read decimated (nearest neighbour), never whole.
MAX_PANEL_SIDE = 1024


def showcase_date(cloudy_pixels: dict[str, int], pixels: int) -> str:
    """The date to show among ``cloudy_pixels`` (date: cloudy pixels of a tile of ``pixels`` pixels): the one
    whose cloudy share is nearest SHOWCASE_CLOUDY_SHARE, so that the quicklook shows clouds and the clear land
    around them (earliest on a tie)."""
    return min(cloudy_pixels, key=lambda date: abs(cloudy_pixels[date] / pixels - SHOWCASE_CLOUDY_SHARE))


def read_bands(path: str | os.PathLike[str], bands: tuple[str, ...]) -> np.ndarray:
    """The (rows, cols, len(bands)) int16 ``bands`` of a 10 m stack, decimated to at most MAX_PANEL_SIDE a side."""
    with open_raster(path) as dataset:
        factor = math.ceil(max(dataset.height, dataset.width) / MAX_PANEL_SIDE)
        shape = (len(bands), math.ceil(dataset.height / factor), math.ceil(dataset.width / factor))
        indexes = [S2_BANDS_10M.index(band) + 1 for band in bands]
        values = read_window(dataset, None, indexes, out_shape=shape, resampling=Resampling.nearest)
    return np.moveaxis(values, 0, -1)


def stretch_limits(rgb: np.ndarray) -> tuple[float, float]:
    """The STRETCH_PERCENTILES (low, high) of the values of the valid pixels of ``rgb``, all bands together."""
    valid = (rgb != S2_NODATA).all(axis=-1)
    low, high = np.percentile(rgb[valid].astype(np.float64), STRETCH_PERCENTILES)
    return float(low), float(max(high, low + 1.0))


def to_bytes(rgb: np.ndarray, low: float, high: float) -> np.ndarray:
    """``rgb`` stretched linearly from [low, high] to [0, 255], no-data black."""
    scaled = np.clip(np.rint((rgb - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)
    return np.where((rgb == S2_NODATA).any(axis=-1, keepdims=True), np.uint8(0), scaled)


def error_colours(error: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) uint8 colours of ``error`` (reflectance) on the scale 0 to ERROR_SCALE; NaN black."""
    position = np.clip(np.nan_to_num(error, nan=0.0) / ERROR_SCALE, 0.0, 1.0) * (len(ERROR_COLOURS) - 1)
    below = np.minimum(np.floor(position).astype(int), len(ERROR_COLOURS) - 2)
    weight = (position - below)[..., np.newaxis]
    colours = ERROR_COLOURS[below] * (1 - weight) + ERROR_COLOURS[below + 1] * weight
    return np.where(np.isnan(error)[..., np.newaxis], 0, np.rint(colours)).astype(np.uint8)


def absolute_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean over the bands of |estimate - truth|, reflectance; NaN where either has no data."""
    nodata = (estimate == S2_NODATA).any(axis=-1) | (truth == S2_NODATA).any(axis=-1)
    error = np.abs(estimate.astype(np.float64) - truth).mean(axis=-1) * S2_MODEL_SCALE
    return np.where(nodata, np.nan, error)


def panel_origin(index: int, cols: int) -> tuple[int, int]:
    """(row, col) of the upper-left pixel of panel ``index`` (0 to 3) in the quicklook of panels ``cols`` wide."""
    return HEADER, index * (cols + PANEL_GAP)


def write_quicklook(
    cloudy: str | os.PathLike[str],
    reconstruction: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    png: str | os.PathLike[str],
) -> Path:
    """Write the four-panel PNG of one date (the three images on the same grid); return its path."""
    images = [read_bands(path, RGB_BANDS) for path in (cloudy, reconstruction, reference)]
    error = absolute_error(*(read_bands(path, S2_BANDS_10M) for path in (reconstruction, reference)))
    low, high = stretch_limits(images[2])
    rows, cols = images[0].shape[:2]
    canvas = np.full((HEADER + rows + FOOTER, 4 * cols + 3 * PANEL_GAP, 3), 255, dtype=np.uint8)
    panels = [to_bytes(image, low, high) for image in images] + [error_colours(error)]
    for index, panel in enumerate(panels):
        top, left = panel_origin(index, cols)
        canvas[top : top + rows, left : left + cols] = panel
    left = panel_origin(3, cols)[1]
    bar = error_colours(np.linspace(0.0, ERROR_SCALE, cols)[np.newaxis, :].repeat(BAR, axis=0))
    canvas[HEADER + rows + 4 : HEADER + rows + 4 + BAR, left : left + cols] = bar
    picture = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default(size=FONT_SIZE)
    for index, title in enumerate(TITLES):
        draw.text((panel_origin(index, cols)[1] + 2, 3), title, fill=(0, 0, 0), font=font)
    for tick in ERROR_TICKS:
        x = left + round(tick / ERROR_SCALE * (cols - 1))
        label = f"{tick:g}" if tick < ERROR_SCALE else f"{tick:g}+"
        anchor = "la" if tick == 0 else "ra" if tick == ERROR_SCALE else "ma"
        draw.text((x, HEADER + rows + 6 + BAR), label, fill=(0, 0, 0), font=font, anchor=anchor)
    draw.text(
        (panel_origin(2, cols)[1] + cols - 4, HEADER + rows + 6 + BAR),
        "mean |error| of B2 B3 B4 B8, reflectance",
        fill=(0, 0, 0),
        font=font,
        anchor="ra",
    )
    return write_png(np.asarray(picture), png)
