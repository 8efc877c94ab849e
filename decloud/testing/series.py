"""Small generated per-pixel time series in the ``.npy`` layout (bands, masks, doys, band_mean, band_std), for
the tests of the time-series encoders: two kinds of pixels with different phenologies, invalid observations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Soil and green-vegetation reflectance x 10000 of the 10 bands of the generated series.
_SOIL = np.linspace(800, 2500, 10)
_GREEN = np.linspace(4000, 300, 10)


def write_series_npy(
    folder: Path, *, shape: tuple[int, int] = (40, 30), dates: int = 12, invalid_share: float = 0.3, seed: int = 7
) -> Path:
    """Write the layout into ``folder``: the left half of the columns greens up at day 120, the right half at day
    240 (Gaussian curves of 50 days), noise of 50, ``invalid_share`` of the observations invalid at random; the
    top-left 5x5 pixels have a single valid date (the fourth) and the bottom-right 3x3 none."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    doys = np.arange(dates) * (360 // dates) + 15
    left = np.exp(-(((doys - 120) / 50.0) ** 2))
    right = np.exp(-(((doys - 240) / 50.0) ** 2))
    curve = np.where(np.arange(cols)[np.newaxis, np.newaxis, :] < cols // 2, left[:, None, None], right[:, None, None])
    curve = np.broadcast_to(curve, (dates, rows, cols))[..., np.newaxis]
    bands = (_SOIL + curve * (_GREEN - _SOIL) + rng.normal(0, 50, (dates, rows, cols, 10))).astype(np.int16)
    masks = (rng.random((dates, rows, cols)) > invalid_share).astype(np.uint8)
    masks[:, :5, :5] = 0
    masks[3, :5, :5] = 1
    masks[:, -3:, -3:] = 0
    folder.mkdir(parents=True, exist_ok=True)
    valid = bands[masks == 1].astype(np.float64)
    arrays = {
        "bands": bands,
        "masks": masks,
        "doys": doys.astype(np.int16),
        "band_mean": valid.mean(axis=0).astype(np.float32),
        "band_std": valid.std(axis=0).astype(np.float32),
    }
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return folder
