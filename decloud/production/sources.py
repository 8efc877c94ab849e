"""Sources of model inputs for the streaming engine.

A source provides one or more model inputs (keys) over any window of the reference grid (the 10 m
Sentinel-2 grid of the product being reconstructed). Each key lives at a scale: 1 for 10 m rasters,
2 for 20 m rasters (whose pixel is 2x2 reference pixels and whose origin is the reference origin).
``read`` is asked only for windows inside the rasters; the engine mirrors beyond the image borders.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.io import DatasetReader
from rasterio.windows import Window

from decloud.core.errors import GridMismatchError
from decloud.core.raster import Grid, open_raster, read_window


@dataclass(frozen=True)
class KeyData:
    """Values (rows, cols, channels) float32 of one key over a window, and where they are valid."""

    values: np.ndarray
    valid: np.ndarray


class TileSource(ABC):
    """Provides model inputs over windows of the reference grid; use as a context manager."""

    #: key -> scale (1: reference 10 m grid, 2: 20 m grid)
    keys: dict[str, int]
    #: keys used by the engine itself (e.g. a clear-sky mask), not fed to the model
    auxiliary: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._stack = ExitStack()

    def __enter__(self) -> TileSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _open_aligned(self, path: str | os.PathLike[str], reference: Grid, scale: int) -> DatasetReader:
        """Open a raster that must lie on the reference grid scaled by ``scale``; the error names it."""
        dataset = self._stack.enter_context(open_raster(path))
        expected = reference.transform @ Affine.scale(scale)
        if dataset.crs != reference.crs or not dataset.transform.almost_equals(expected, precision=1e-6):
            raise GridMismatchError(
                f"{dataset.name} is not on the {10 * scale} m grid of the reference image: "
                f"{Grid.of(dataset).describe()}, expected CRS {reference.crs}, pixel {expected.a:g} m, "
                f"origin ({expected.c:.3f}, {expected.f:.3f})"
            )
        rows, cols = -(-reference.height // scale), -(-reference.width // scale)
        if abs(dataset.height - rows) > 1 or abs(dataset.width - cols) > 1:
            raise GridMismatchError(
                f"{dataset.name} is {dataset.height}x{dataset.width} pixels, the reference grid needs {rows}x{cols}"
            )
        return dataset

    @abstractmethod
    def shape(self, scale: int) -> tuple[int, int]:
        """(rows, cols) of the source's grid at ``scale``."""

    @abstractmethod
    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        """Every key over the window of its scale (windows lie inside the grids)."""


def read_raster(dataset: DatasetReader, window: Window, nodata: float | None) -> KeyData:
    """A raster window as (rows, cols, bands) float32; invalid where any band equals ``nodata``."""
    values = np.moveaxis(read_window(dataset, window), 0, -1)
    valid = np.ones(values.shape[:2], dtype=bool) if nodata is None else (values != nodata).all(axis=-1)
    return KeyData(values.astype(np.float32), valid)


class RasterSource(TileSource):
    """One key read from one raster (e.g. ``s2_t`` from a FRE_10m stack, ``dem`` from a 20 m DEM)."""

    def __init__(self, key: str, path: str | os.PathLike[str], reference: Grid, *, scale: int = 1,
                 nodata: float | None = None) -> None:  # fmt: skip
        super().__init__()
        self.keys = {key: scale}
        self.path = Path(path)
        self.nodata = nodata
        try:
            self.dataset = self._open_aligned(path, reference, scale)
        except BaseException:
            self._stack.close()
            raise

    def shape(self, scale: int) -> tuple[int, int]:
        return self.dataset.height, self.dataset.width

    def read(self, windows: dict[int, Window]) -> dict[str, KeyData]:
        ((key, scale),) = self.keys.items()
        return {key: read_raster(self.dataset, windows[scale], self.nodata)}
