"""Smooth, deterministic pseudo-landscapes: pixel values are a function of the pixel's position, the
band and a seed only, so any window of a generated image can be computed on its own (large images are
generated window by window) and tests can recompute any pixel."""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window


def texture(window: Window, band: int, seed: int, scale: int = 1) -> np.ndarray:
    """Values in [0, 1] over ``window`` (rows, cols float32) of a grid whose pixel is ``scale`` times
    the 10 m pixel (1 for 10 m, 2 for 20 m): the same place gives similar values at every scale."""
    rng = np.random.default_rng([seed, band])
    rows = (np.arange(window.row_off, window.row_off + window.height, dtype=np.float64) + 0.5) * scale
    cols = (np.arange(window.col_off, window.col_off + window.width, dtype=np.float64) + 0.5) * scale
    values = np.zeros((window.height, window.width), dtype=np.float64)
    for _ in range(4):
        frequency_r, frequency_c = rng.uniform(0.005, 0.08, size=2)
        phase_r, phase_c = rng.uniform(0, 2 * np.pi, size=2)
        values += np.outer(np.sin(frequency_r * rows + phase_r), np.cos(frequency_c * cols + phase_c))
    return ((values / 4.0 + 1.0) / 2.0).astype(np.float32)
