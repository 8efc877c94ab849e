"""Sources of observations: what a per-pixel time series is made of.

A source yields, for any window of its tile's 10 m grid, the values (dates, rows, cols, bands) of its
observations and their validity (dates, rows, cols). The store and the encoders take a list of sources, so a
Sentinel-1 source can stand beside the Sentinel-2 one without changing them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime

import numpy as np
from rasterio.windows import Window

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA, S2_SUFFIX_EDG
from decloud.core.errors import InputNotFoundError, InvalidArgumentError
from decloud.core.naming import parse_s2_product_name
from decloud.core.products import S2Product
from decloud.core.raster import Grid, open_raster
from decloud.production.sources import RasterSource


class ObservationSource(ABC):
    """Observations of one sensor over one tile; use as a context manager."""

    #: Short name of the source, used as the name of its arrays in the store (``s2``, later ``s1``).
    name: str
    #: Band (channel) names, in the order of the last axis of :meth:`read`.
    bands: tuple[str, ...]
    #: No-data value of the values.
    nodata: int
    tile: str
    grid: Grid  #: the 10 m grid the windows refer to
    dates: list[datetime]  #: acquisition dates, increasing

    def __enter__(self) -> ObservationSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - sources without open files need nothing
        """Release open files."""

    @abstractmethod
    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Values (dates, rows, cols, bands) int16 and validity (dates, rows, cols) bool over ``window``."""


class PreparedS2Series(ObservationSource):
    """The prepared Sentinel-2 products of a tile as a time series of the 10 bands on the 10 m grid.

    The 20 m bands are brought onto the 10 m grid by nearest neighbour (each 20 m pixel covers 2x2 pixels),
    so every stored value is a prepared value. An observation is valid where its cloud mask (CLM) and its
    edge mask (EDG) are 0 and none of its bands is no-data.
    """

    name = "s2"
    bands = S2_BANDS_10M + S2_BANDS_20M
    nodata = S2_NODATA

    def __init__(self, products: Sequence[S2Product]) -> None:
        if not products:
            raise InvalidArgumentError("no prepared Sentinel-2 product given")
        self.products = sorted(products, key=lambda product: product.acquired)
        tiles = {product.name: parse_s2_product_name(product.name).tile for product in self.products}
        first = self.products[0].name
        for name, tile in tiles.items():
            if tile != tiles[first]:
                raise InvalidArgumentError(f"{name} is a product of tile {tile}, {first} of tile {tiles[first]}")
        self.tile = tiles[first]
        self.dates = [product.acquired for product in self.products]
        with open_raster(self.products[0].bands_10m) as dataset:
            self.grid = Grid.of(dataset)
        self._stack = ExitStack()
        try:
            self._rasters = [self._open(product) for product in self.products]
        except BaseException:
            self._stack.close()
            raise

    def _open(self, product: S2Product) -> dict[str, RasterSource]:
        files = {
            "10m": (product.bands_10m, 1, S2_NODATA),
            "20m": (product.bands_20m, 2, S2_NODATA),
            "clm": (product.cloud_mask, 1, None),
            "edg": (product.file(S2_SUFFIX_EDG), 1, None),
        }
        for path, _, _ in files.values():
            if not path.is_file():
                raise InputNotFoundError(path, f"file of the prepared product {product.name}")
        return {
            key: self._stack.enter_context(RasterSource(key, path, self.grid, scale=scale, nodata=nodata))
            for key, (path, scale, nodata) in files.items()
        }

    def close(self) -> None:
        self._stack.close()

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        row, col, height, width = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        values = np.empty((len(self.products), height, width, len(self.bands)), np.int16)
        valid = np.empty((len(self.products), height, width), bool)
        for index, rasters in enumerate(self._rasters):
            fine = rasters["10m"].read({1: _shifted(rasters["10m"], 1, row, col, height, width)})["10m"]
            clm = rasters["clm"].read({1: _shifted(rasters["clm"], 1, row, col, height, width)})["clm"].values
            edg = rasters["edg"].read({1: _shifted(rasters["edg"], 1, row, col, height, width)})["edg"].values
            values[index, ..., : len(S2_BANDS_10M)] = fine.values
            coarse_valid = _read_20m_on_10m(rasters["20m"], row, col, values[index, ..., len(S2_BANDS_10M) :])
            np.logical_and(fine.valid, coarse_valid, out=valid[index])
            valid[index] &= (clm[..., 0] == 0) & (edg[..., 0] == 0)
        return values, valid


def _shifted(source: RasterSource, scale: int, row: int, col: int, height: int, width: int) -> Window:
    """The window of the source's raster at ``scale`` covering (row, col, height, width) of that scale's grid."""
    row_offset, col_offset, _, _ = source.extent(scale)
    return Window(col + col_offset, row + row_offset, width, height)


def _read_20m_on_10m(source: RasterSource, row: int, col: int, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` (height, width, bands), a 10 m window from (row, col), with the 20 m values, each 20 m pixel
    on its 2x2 10 m pixels, and return their validity. The last 20 m row or column of a raster may be missing
    (odd 10 m sizes): the nearest one is repeated."""
    height, width = out.shape[:2]
    row_offset, col_offset, rows, cols = source.extent(2)
    top, left = row // 2, col // 2
    last_row = min(math.ceil((row + height) / 2), rows - row_offset)
    last_col = min(math.ceil((col + width) / 2), cols - col_offset)
    window = Window(left + col_offset, top + row_offset, last_col - left, last_row - top)
    (data,) = source.read({2: window}).values()
    # the 20 m pixel of each 10 m row and column of the window, in the window read
    pick_rows = np.minimum(np.arange(row, row + height) // 2 - top, last_row - top - 1)
    pick_cols = np.minimum(np.arange(col, col + width) // 2 - left, last_col - left - 1)
    out[...] = data.values.take(pick_rows, axis=0).take(pick_cols, axis=1)
    return data.valid.take(pick_rows, axis=0).take(pick_cols, axis=1)
