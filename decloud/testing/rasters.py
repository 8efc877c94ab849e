"""Writing generated rasters window by window, in the formats the real products use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from decloud.core.raster import DEFAULT_WINDOW_SIZE, block_windows


def write_generated_band(
    path: Path,
    *,
    height: int,
    width: int,
    transform: Affine,
    crs: str,
    dtype: str,
    values: Callable[[Window], np.ndarray],
    nodata: float | None = None,
    driver: str = "GTiff",
    tags: dict[str, str] | None = None,
    **creation_options: Any,
) -> Path:
    """Write a one-band raster whose pixels in each window are ``values(window)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        "driver": driver,
        "height": height,
        "width": width,
        "count": 1,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        **creation_options,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if driver == "GTiff":
        profile.setdefault("tiled", True)
    with rasterio.open(path, "w", **profile) as dataset:
        for window in block_windows(height, width, DEFAULT_WINDOW_SIZE):
            dataset.write(values(window).astype(dtype), 1, window=window)
        if tags:
            dataset.update_tags(**tags)
    return path


def read_raster(path: str | Path) -> np.ndarray:
    """All the bands of a raster, (bands, rows, cols): what tests compare."""
    with rasterio.open(path) as dataset:
        return dataset.read()


def raster_grid(path: str | Path) -> tuple:
    """(CRS, geotransform, (rows, cols)) of a raster: what "on the same grid" compares."""
    with rasterio.open(path) as dataset:
        return dataset.crs, dataset.transform, dataset.shape
