"""Line plots drawn with numpy (decloud depends on no plotting library), written as PNG."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from decloud.core.raster import write_png

#: Line colours, in the order the curves are given.
COLOURS = ((128, 128, 128), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))
MARGIN = 16
LEGEND_FONT_SIZE = 12


def plot_lines(curves: dict[str, np.ndarray], path: str | os.PathLike[str], size: int = 320) -> None:
    """Each curve (y values at evenly spaced x from 0 to 1) as a 3-pixel line on a white square of ``size``
    pixels with a black frame; all curves share the y range. Colours follow the curves' order (see COLOURS);
    the names are written in their colours in the upper right corner (a legend)."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    inner = size - 2 * MARGIN
    canvas[MARGIN - 1, MARGIN - 1 : size - MARGIN + 1] = 0
    canvas[size - MARGIN, MARGIN - 1 : size - MARGIN + 1] = 0
    canvas[MARGIN - 1 : size - MARGIN + 1, MARGIN - 1] = 0
    canvas[MARGIN - 1 : size - MARGIN + 1, size - MARGIN] = 0
    values = np.concatenate([np.asarray(curve, np.float64) for curve in curves.values()])
    low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0
    for index, curve in enumerate(curves.values()):
        curve = np.asarray(curve, np.float64)
        x = np.linspace(0, 1, 4 * inner)
        y = np.interp(x, np.linspace(0, 1, len(curve)), curve)
        cols = MARGIN + np.rint(x * (inner - 1)).astype(int)
        rows = MARGIN + np.rint((1 - (y - low) / span) * (inner - 1)).astype(int)
        for offset in (-1, 0, 1):
            canvas[np.clip(rows + offset, 0, size - 1), cols] = COLOURS[index % len(COLOURS)]
    picture = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default(size=LEGEND_FONT_SIZE)
    for index, name in enumerate(curves):
        position = (size - MARGIN - 4, MARGIN + 2 + index * (LEGEND_FONT_SIZE + 2))
        draw.text(position, name, fill=COLOURS[index % len(COLOURS)], font=font, anchor="ra")
    write_png(np.asarray(picture), path)
