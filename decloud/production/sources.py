"""Sources of model inputs for the streaming engine.

A source provides one or more model inputs (keys) over any window of the reference grid (the 10 m
Sentinel-2 grid of the product being reconstructed). Each key lives at a scale: 1 for 10 m rasters,
2 for 20 m rasters (whose pixel is 2x2 reference pixels and whose origin is the reference origin).
``read`` is asked only for windows inside the rasters; the engine mirrors beyond the image borders.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from decloud.core.errors import GridMismatchError
from decloud.core.grid_20m import grid_offset
from decloud.core.raster import Grid, open_raster, read_window


@dataclass(frozen=True)
class KeyData:
    """Values (rows, cols, channels) of one key over a window, in the rasters' type (the engine turns them
    into float32 once, when it feeds the model), and where they are valid."""

    values: np.ndarray
    valid: np.ndarray


class InputSource(ABC):
    """Provides model inputs over windows of the reference grid; use as a context manager.

    The reference may be a part of the rasters (a subset of a tile): the source knows where the reference
    origin lies in its rasters, so that margins read real pixels wherever the rasters have them.
    """

    #: key -> scale (1: reference 10 m grid, 2: 20 m grid)
    keys: dict[str, int]
    #: keys used by the engine itself (e.g. a clear-sky mask), not fed to the model
    auxiliary: frozenset[str] = frozenset()

    def __init__(self, reference: Grid) -> None:
        self.reference = reference
        self._stack = ExitStack()
        self._extents: dict[int, tuple[int, int, int, int]] = {}

    def __enter__(self) -> InputSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _open_aligned(self, path: str | os.PathLike[str], scale: int) -> DatasetReader:
        """Open a raster that must lie on the reference grid scaled by ``scale`` and cover the reference;
        the error names it. All the rasters of a scale must share their grid."""
        dataset = self._stack.enter_context(open_raster(path))
        row, col = grid_offset(Grid.of(dataset), self.reference, scale, dataset.name)
        extent = (row, col, dataset.height, dataset.width)
        rows, cols = -(-self.reference.height // scale), -(-self.reference.width // scale)
        if (
            extent[0] < 0
            or extent[1] < 0
            or extent[0] + rows > dataset.height + 1
            or extent[1] + cols > dataset.width + 1
        ):
            raise GridMismatchError(f"{dataset.name} does not cover the reference area ({self.reference.describe()})")
        if self._extents.setdefault(scale, extent) != extent:
            raise GridMismatchError(
                f"{dataset.name} is not on the grid of the other {10 * scale} m rasters given with it"
            )
        return dataset

    def extent(self, scale: int) -> tuple[int, int, int, int]:
        """(row, col) of the reference origin in the rasters of ``scale``, and their (rows, cols)."""
        return self._extents[scale]

    @abstractmethod
    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        """Every key over the window of its scale, in raster coordinates (windows lie inside the rasters)."""


def read_raster(dataset: DatasetReader, window: Window, nodata: float | None) -> KeyData:
    """A raster window as (rows, cols, bands); invalid where any band equals ``nodata``."""
    values = np.moveaxis(read_window(dataset, window), 0, -1)
    valid = np.ones(values.shape[:2], dtype=bool) if nodata is None else (values != nodata).all(axis=-1)
    return KeyData(values, valid)


class RasterSource(InputSource):
    """One key read from one raster (e.g. ``s2_t`` from a FRE_10m stack, ``dem`` from a 20 m DEM)."""

    def __init__(self, key: str, path: str | os.PathLike[str], reference: Grid, *, scale: int = 1,
                 nodata: float | None = None) -> None:  # fmt: skip
        super().__init__(reference)
        self.keys = {key: scale}
        self.path = Path(path)
        self.nodata = nodata
        try:
            self.dataset = self._open_aligned(path, scale)
        except BaseException:
            self._stack.close()
            raise

    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        ((key, scale),) = self.keys.items()
        return {key: read_raster(self.dataset, windows[scale], self.nodata)}


def series_keys(name: str) -> tuple[str, str]:
    """The keys of a per-pixel time series: its values and its per-date validity mask."""
    return f"{name}_values", f"{name}_mask"


class SeriesSource(InputSource):
    """A per-pixel time series fed to a per-pixel model as two keys: ``<name>_values`` (rows, cols, dates x
    bands, date-major) and ``<name>_mask`` (rows, cols, dates; 1 where the observation is valid). A pixel is
    valid where any of its dates is.

    ``read_series`` gives the values (dates, rows, cols, bands) and validity (dates, rows, cols) over a window
    of the series' own grid (a series store, or the prepared products of a tile, read in place), of which the
    reference grid is the part whose origin is (``origin_row``, ``origin_col``) and ``shape`` the size."""

    def __init__(
        self,
        name: str,
        read_series: Callable[[Window], tuple[np.ndarray, np.ndarray]],
        reference: Grid,
        *,
        dates: int,
        bands: int,
        origin: tuple[int, int] = (0, 0),
        shape: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(reference)
        self.values_key, self.mask_key = series_keys(name)
        self.keys = {self.values_key: 1, self.mask_key: 1}
        self.channels = {self.values_key: dates * bands, self.mask_key: dates}
        rows, cols = shape or (reference.height, reference.width)
        if origin[0] < 0 or origin[1] < 0 or origin[0] + reference.height > rows or origin[1] + reference.width > cols:
            raise GridMismatchError(
                f"the {rows}x{cols} series does not cover the reference area ({reference.describe()})"
            )
        self._extents[1] = (*origin, rows, cols)
        self._read_series = read_series

    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        values, valid = self._read_series(windows[1])
        dates, rows, cols, bands = values.shape
        pixel_valid = valid.any(axis=0)
        return {
            self.values_key: KeyData(np.moveaxis(values, 0, 2).reshape(rows, cols, dates * bands), pixel_valid),
            self.mask_key: KeyData(np.moveaxis(valid, 0, 2), pixel_valid),
        }
