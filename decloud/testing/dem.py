"""Generated DEMs: a band whose elevation is a chosen function of the map coordinates of each pixel
centre, in the DEM's own CRS, so that a test can compute the expected elevation at any point of the
ground independently of the code under test (for instance through another CRS)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

from decloud.core.constants import DEM_NODATA
from decloud.testing.rasters import write_generated_band

#: Elevation (metres) as a function of map coordinates (x, y) of pixel centres; NaN means no data.
Elevation = Callable[[np.ndarray, np.ndarray], np.ndarray]


def pixel_centres(transform: Affine, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (x, y), each (rows, cols), of the centres of the pixels of ``window``."""
    cols = np.arange(window.col_off, window.col_off + window.width, dtype=np.float64) + 0.5
    rows = np.arange(window.row_off, window.row_off + window.height, dtype=np.float64) + 0.5
    col_grid, row_grid = np.meshgrid(cols, rows)
    return transform @ (col_grid, row_grid)


def gentle_terrain(transform: Affine) -> Elevation:
    """A smooth terrain for the grid of ``transform``: a tilted plane with low hills, between about
    80 and 1000 m over a few hundred pixels. It is defined in pixel units of that grid so that it
    looks the same whatever the CRS units (degrees or metres)."""
    inverse = ~transform

    def elevation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        col, row = inverse @ (x, y)
        return 100.0 + 0.8 * col + 0.5 * row + 20.0 * np.sin(col / 15.0) * np.cos(row / 21.0)

    return elevation


def make_dem(
    path: str | Path,
    *,
    crs: str,
    transform: Affine,
    shape: tuple[int, int],
    elevation: Elevation | None = None,
    nodata: float = DEM_NODATA,
    dtype: str = "float32",
) -> Path:
    """Write a one-band DEM of ``shape`` (rows, cols) whose value at each pixel is ``elevation(x, y)``
    at the pixel centre (default :func:`gentle_terrain`); NaN elevations become ``nodata``. An int16
    DEM holds the elevations rounded to the nearest metre."""
    elevation = elevation or gentle_terrain(transform)
    integer = np.dtype(dtype).kind in "iu"

    def values(window: Window) -> np.ndarray:
        heights = np.asarray(elevation(*pixel_centres(transform, window)), dtype=np.float64)
        heights = np.rint(heights) if integer else heights
        return np.where(np.isnan(heights), nodata, heights)

    height, width = shape
    return write_generated_band(
        Path(path),
        height=height,
        width=width,
        transform=transform,
        crs=crs,
        dtype=dtype,
        values=values,
        nodata=nodata,
        compress="deflate",
    )
