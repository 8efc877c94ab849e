"""Small generated per-pixel time series in the ``.npy`` layout (bands, masks, doys, band_mean, band_std), for
the tests of the time-series encoders: two kinds of pixels with different phenologies, invalid observations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from decloud.core.raster import Grid, write_array

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


#: Phenology of the classes of the labelled landscape: name, then (peak day, width in days, greenness) of each
#: green-up; the crops overlap in time (wheat and barley, maize and sunflower) so that they are not trivial.
LANDSCAPE_CLASSES = (
    ("wheat", ((125, 40, 0.9),)),
    ("barley", ((110, 35, 0.85),)),
    ("rapeseed", ((95, 30, 0.8),)),
    ("maize", ((215, 35, 0.95),)),
    ("sunflower", ((195, 30, 0.8),)),
    ("double_crop", ((100, 25, 0.7), (245, 30, 0.8))),
    ("grassland", ((150, 120, 0.6),)),
    ("forest", ((180, 400, 0.85),)),
    ("bare", ((180, 30, 0.05),)),
)


def labelled_landscape(
    *,
    shape: tuple[int, int] = (256, 256),
    dates: int = 24,
    parcels: int = 300,
    cloudy_share: float = 0.3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A labelled series: Voronoi parcels of the LANDSCAPE_CLASSES, each with its class's phenology shifted by up
    to 15 days and its own brightness, observed on ``dates`` dates of a year, ``cloudy_share`` of the
    observations cloudy (invalid, bright values). Returns bands (T, H, W, 10) int16, masks (T, H, W) uint8,
    doys (T,) int16, classes (H, W) uint8 (1..K), parcel ids (H, W) int32."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    centres = rng.uniform(0, 1, (parcels, 2)) * (rows, cols)
    grid_rows, grid_cols = np.mgrid[0:rows, 0:cols]
    parcel = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    for index, (r, c) in enumerate(centres):
        distance = (grid_rows - r) ** 2 + (grid_cols - c) ** 2
        closer = distance < best
        parcel[closer], best[closer] = index, distance[closer]
    parcel_class = rng.integers(0, len(LANDSCAPE_CLASSES), parcels)
    shift = rng.uniform(-15, 15, parcels)
    brightness = rng.uniform(0.85, 1.15, parcels)
    doys = np.sort(rng.choice(np.arange(1, 366), dates, replace=False))
    greenness = np.zeros((dates, parcels))
    for index in range(parcels):
        for peak, width, height in LANDSCAPE_CLASSES[parcel_class[index]][1]:
            greenness[:, index] += height * np.exp(-(((doys - peak - shift[index]) / width) ** 2))
    greenness = np.clip(greenness, 0, 1)
    mixed = _SOIL + greenness[..., np.newaxis] * (_GREEN - _SOIL)  # (T, parcels, 10)
    bands = mixed[:, parcel] * brightness[parcel][np.newaxis, ..., np.newaxis]
    bands += rng.normal(0, 80, bands.shape)
    # Clouds come in blobs: a pixel is cloudy where a smoothed noise field is high.
    field = rng.random((dates, rows // 16 + 2, cols // 16 + 2))
    blobs = field.repeat(16, axis=1).repeat(16, axis=2)[:, :rows, :cols]
    cloudy = blobs < cloudy_share
    bands[cloudy] = 7000 + bands[cloudy] / 4
    return (
        np.clip(np.rint(bands), 1, 9999).astype(np.int16),
        (~cloudy).astype(np.uint8),
        doys.astype(np.int16),
        (parcel_class[parcel] + 1).astype(np.uint8),
        parcel + 1,
    )


def write_labelled_landscape(folder: Path, grid: Grid, **landscape: Any) -> tuple[Path, Path]:
    """:func:`labelled_landscape` on ``grid`` (its size) written as the ``.npy`` layout into ``<folder>/processed``
    and its class raster as ``<folder>/classes.tif`` (0: unlabelled); ``landscape``: the generator's arguments.
    Returns both paths."""
    bands, masks, doys, classes, _ = labelled_landscape(shape=(grid.height, grid.width), **landscape)
    processed = folder / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    valid = bands[masks == 1].astype(np.float64)
    arrays = {
        "bands": bands,
        "masks": masks,
        "doys": doys,
        "band_mean": valid.mean(axis=0).astype(np.float32),
        "band_std": valid.std(axis=0).astype(np.float32),
    }
    for name, array in arrays.items():
        np.save(processed / f"{name}.npy", array)
    write_array(folder / "classes.tif", classes, crs=grid.crs, transform=grid.transform, nodata=0)
    return processed, folder / "classes.tif"
