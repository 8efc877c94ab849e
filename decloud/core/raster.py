"""Thin raster I/O on rasterio: validated opening, grid checks, patch-aligned windows and the one
GeoTIFF profile every output uses (tiled, DEFLATE, BigTIFF when needed, no-data, band descriptions).

Nothing here reads a whole raster: callers iterate :func:`block_windows` and read or write window by
window, so memory stays bounded whatever the image size (a full Sentinel-2 tile is 10980x10980).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.windows import Window

from decloud.core.atomic import WRITER, WRITER_TAG
from decloud.core.errors import CorruptRasterError, GridMismatchError, InputNotFoundError, InvalidArgumentError
from decloud.preprocessing.constants import PATCH_SIZE

#: Default side of the windows that steps process at once: 1024x1024 pixels keeps every step's memory
#: in the tens of megabytes and is a multiple of the patch size and of the output block size.
DEFAULT_WINDOW_SIZE = 1024
#: Side of the internal tiles of every GeoTIFF written.
BLOCK_SIZE = 256
#: GDAL block cache of every step, in MB. GDAL's default (5 % of the RAM) lets written blocks pile up
#: until a file is closed, so memory would grow with the image size; a fixed cache keeps it flat.
GDAL_CACHE_MB = 128


def gdal_environment() -> rasterio.Env:
    """The GDAL settings every step runs under (use as a context manager)."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)


def _is_virtual(path: str) -> bool:
    """GDAL virtual paths (/vsizip/, /vsicurl/...) cannot be checked with os.path."""
    return path.startswith("/vsi")


def open_raster(path: str | os.PathLike[str]) -> DatasetReader:
    """Open a raster for reading, turning GDAL's errors into errors that name the file.

    Use it as a context manager, like :func:`rasterio.open`.
    """
    path = str(path)
    if not _is_virtual(path) and not os.path.exists(path):
        raise InputNotFoundError(path, "raster")
    try:
        return rasterio.open(path)
    except RasterioError as error:
        raise CorruptRasterError(path, str(error)) from error


def read_window(
    dataset: DatasetReader, window: Window, indexes: int | Sequence[int] | None = None, **kwargs: Any
) -> np.ndarray:
    """Read a window of ``dataset``; a read failure (truncated or corrupt file) names the file."""
    try:
        return dataset.read(indexes, window=window, **kwargs)
    except RasterioError as error:
        raise CorruptRasterError(dataset.name, str(error)) from error


@dataclass(frozen=True)
class Grid:
    """The pixel grid of a raster: CRS, geotransform and size."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, dataset: DatasetReader) -> Grid:
        return cls(dataset.crs, dataset.transform, dataset.width, dataset.height)

    def describe(self) -> str:
        resolution = (self.transform.a, -self.transform.e)
        return (
            f"{self.height}x{self.width} pixels, {resolution[0]:g}x{resolution[1]:g} m, "
            f"origin ({self.transform.c:.3f}, {self.transform.f:.3f}), CRS {self.crs}"
        )

    def same_as(self, other: Grid, tolerance: float = 1e-6) -> bool:
        return (
            self.crs == other.crs
            and self.width == other.width
            and self.height == other.height
            and self.transform.almost_equals(other.transform, precision=tolerance)
        )


def require_same_grid(datasets: Sequence[DatasetReader]) -> Grid:
    """Check that all ``datasets`` share the first one's grid; the error names the first that differs."""
    reference = Grid.of(datasets[0])
    for dataset in datasets[1:]:
        grid = Grid.of(dataset)
        if not grid.same_as(reference):
            raise GridMismatchError(
                f"{dataset.name} is not on the grid of {datasets[0].name}: "
                f"{grid.describe()} instead of {reference.describe()}"
            )
    return reference


def block_windows(height: int, width: int, window_size: int = DEFAULT_WINDOW_SIZE) -> Iterator[Window]:
    """Windows covering a height x width raster, row by row, each starting on the patch grid.

    ``window_size`` must be a multiple of :data:`PATCH_SIZE` so that no elementary patch is split
    between two windows; the last row and column of windows are clipped to the raster.
    """
    if window_size <= 0 or window_size % PATCH_SIZE:
        raise InvalidArgumentError(f"window size {window_size} is not a positive multiple of {PATCH_SIZE}")
    for row in range(0, height, window_size):
        for col in range(0, width, window_size):
            yield Window(col, row, min(window_size, width - col), min(window_size, height - row))


def geotiff_profile(
    *,
    width: int,
    height: int,
    count: int,
    dtype: str | np.dtype,
    crs: CRS | None,
    transform: Affine,
    nodata: float | None = None,
    deflate_level: int | None = None,
) -> dict[str, Any]:
    """The creation profile of every GeoTIFF decloud writes: tiled, DEFLATE with a predictor suited
    to the data type, BigTIFF when the file could pass 4 GB. ``deflate_level`` (1-9, GDAL's default 6)
    trades file size for CPU time."""
    dtype = np.dtype(dtype)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": dtype.name,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": BLOCK_SIZE,
        "blockysize": BLOCK_SIZE,
        "compress": "deflate",
        "predictor": 3 if dtype.kind == "f" else 2,
        "bigtiff": "IF_SAFER",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if deflate_level is not None:
        profile["zlevel"] = deflate_level
    return profile


def create_geotiff(
    path: str | os.PathLike[str],
    profile: dict[str, Any],
    descriptions: Sequence[str] | None = None,
    tags: dict[str, Any] | None = None,
) -> DatasetWriter:
    """Create a GeoTIFF from a :func:`geotiff_profile`, with band descriptions and dataset tags."""
    dataset = rasterio.open(Path(path), "w", **profile)
    if descriptions is not None:
        if len(descriptions) != profile["count"]:
            dataset.close()
            raise InvalidArgumentError(f"{len(descriptions)} band descriptions for {profile['count']} bands")
        for index, description in enumerate(descriptions, start=1):
            dataset.set_band_description(index, description)
    dataset.update_tags(**{WRITER_TAG: WRITER}, **{key: str(value) for key, value in (tags or {}).items()})
    return dataset


def write_array(
    path: str | os.PathLike[str],
    array: np.ndarray,
    *,
    crs: CRS | None,
    transform: Affine,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tags: dict[str, Any] | None = None,
) -> None:
    """Write a small (bands, rows, cols) or (rows, cols) array, such as a statistics raster, at once."""
    bands = array[np.newaxis] if array.ndim == 2 else array
    profile = geotiff_profile(
        width=bands.shape[2],
        height=bands.shape[1],
        count=bands.shape[0],
        dtype=bands.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    with create_geotiff(path, profile, descriptions, tags) as dataset:
        dataset.write(bands)
