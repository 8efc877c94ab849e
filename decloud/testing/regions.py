"""Rectangular areas (clouds, no-data) of generated products, in 10 m pixel coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window


@dataclass(frozen=True)
class Rect:
    """Rows [row, row + height) and columns [col, col + width) of the 10 m grid."""

    row: int
    col: int
    height: int
    width: int

    def mask(self, window: Window, scale: int = 1) -> np.ndarray:
        """True over the pixels of ``window`` (on a grid of ``scale`` x 10 m) that touch the rectangle."""
        rows = np.arange(window.row_off, window.row_off + window.height) * scale
        cols = np.arange(window.col_off, window.col_off + window.width) * scale
        in_rows = (rows + scale > self.row) & (rows < self.row + self.height)
        in_cols = (cols + scale > self.col) & (cols < self.col + self.width)
        return np.outer(in_rows, in_cols)


def union_mask(rects: Sequence[Rect], window: Window, scale: int = 1) -> np.ndarray:
    """True where any of ``rects`` touches a pixel of ``window``."""
    mask = np.zeros((window.height, window.width), dtype=bool)
    for rect in rects:
        mask |= rect.mask(window, scale)
    return mask
