"""Reading the pixels of a sample: for one tuple, the patch of every image of every acquisition, as
(rows, cols, channels) arrays under the keys of :mod:`decloud.core.keys`, with the tile, the patch
origin and the dates so that every sample can be traced back to its source pixels.

An acquisition that takes its clouds from a mask donor (same-date truth) gets its clear patch with the donor
product's cloud mask transplanted (:mod:`decloud.acquisitions.transplant`) and its holes under
``s2_holes_<acquisition>``; the donor gives its date only.

rasterio datasets are not thread-safe, so each reading thread keeps its own open datasets.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from decloud.acquisitions.transplant import cloud_holes, holes_at_scale, punch_holes
from decloud.core import keys
from decloud.core.errors import GridMismatchError, InputNotFoundError
from decloud.core.grid_20m import SCALE_20M, grid_offset
from decloud.core.raster import Grid, open_raster, read_window
from decloud.sampling.catalog import TileCatalog
from decloud.sampling.search import SampleTuples


class SampleReader:
    """Reads samples of ``patchsize`` pixels for the tuples found in ``catalogs``."""

    def __init__(
        self,
        catalogs: Sequence[TileCatalog],
        patchsize: int,
        *,
        with_20m_bands: bool = False,
        with_dem: bool = False,
        transplants: Mapping[str, str] | None = None,
    ) -> None:
        self.catalogs = list(catalogs)
        self.transplants = dict(transplants or {})  #: acquisition -> its mask donor
        self.patchsize = patchsize
        self.with_20m_bands = with_20m_bands
        self.with_dem = with_dem
        if with_dem:
            for catalog in self.catalogs:
                if catalog.dem is None:
                    raise InputNotFoundError(f"DEM_ROOT_DIR/{catalog.tile}.tif", f"DEM of {catalog.tile}")
        self._local = threading.local()
        self._opened: list[DatasetReader] = []
        self._lock = threading.Lock()

    def _open(self, path: Path, reference: Path | None = None) -> DatasetReader:
        """The calling thread's dataset of ``path``; on first opening, a 10 m raster (``reference`` given)
        is checked to be on the grid of the tile's reference S2 product."""
        datasets = self._local.__dict__.setdefault("datasets", {})
        if path not in datasets:
            dataset = open_raster(path)
            if reference is not None and not Grid.of(dataset).same_as(Grid.of(self._open(reference))):
                dataset.close()
                raise GridMismatchError(f"{path} is not on the 10 m grid of {reference}")
            datasets[path] = dataset
            with self._lock:
                self._opened.append(dataset)
        return datasets[path]

    def close(self) -> None:
        """Close the datasets opened by every thread (call it once the reading threads are done)."""
        with self._lock:
            for dataset in self._opened:
                dataset.close()
            self._opened.clear()

    def _patch_10m(self, path: Path, row: int, col: int, reference: Path) -> np.ndarray:
        """(rows, cols, bands) patch of a 10 m raster at pixel (row, col)."""
        window = Window(col, row, self.patchsize, self.patchsize)
        return np.moveaxis(read_window(self._open(path, reference), window), 0, -1)

    def _patch_20m(self, path: Path, row: int, col: int, reference: Path) -> np.ndarray:
        """(rows, cols, bands) patch of a 20 m raster under the 10 m patch at pixel (row, col) (even), the
        raster being on the 20 m grid of the reference (:func:`decloud.core.grid_20m.grid_offset`)."""
        dataset = self._open(path)
        row_20m, col_20m = grid_offset(Grid.of(dataset), Grid.of(self._open(reference)), SCALE_20M, str(path))
        size = self.patchsize // SCALE_20M
        window = Window(col_20m + col // SCALE_20M, row_20m + row // SCALE_20M, size, size)
        return np.moveaxis(read_window(dataset, window), 0, -1)

    def read(self, tuples: SampleTuples, index: int) -> dict[str, np.ndarray]:
        catalog = self.catalogs[tuples.tile_index[index]]
        row = int(tuples.patch_row[index]) * self.patchsize
        col = int(tuples.patch_col[index]) * self.patchsize
        reference = catalog.s2[0].bands_10m
        sample = {
            keys.TILE: np.array(catalog.tile.encode()),
            keys.PATCH_ROW: np.int32(row),
            keys.PATCH_COL: np.int32(col),
        }
        donors = set(self.transplants.values())
        for name, images in tuples.s2.items():
            product = catalog.s2[images[index]]
            sample[keys.key(keys.S2_TIMESTAMP, name)] = np.float64(product.acquired.timestamp())
            if name in donors:
                continue
            sample[keys.key(keys.S2, name)] = self._patch_10m(product.bands_10m, row, col, reference)
            if self.with_20m_bands:
                sample[keys.key(keys.S2_20M, name)] = self._patch_20m(product.bands_20m, row, col, reference)
        for name, donor in self.transplants.items():
            mask = catalog.s2[tuples.s2[donor][index]].cloud_mask
            holes = cloud_holes(self._patch_10m(mask, row, col, reference)[..., 0])
            sample[keys.key(keys.S2_HOLES, name)] = holes[..., np.newaxis].astype(np.uint8)
            sample[keys.key(keys.S2, name)] = punch_holes(sample[keys.key(keys.S2, name)], holes)
            if self.with_20m_bands:
                image_20m = sample[keys.key(keys.S2_20M, name)]
                sample[keys.key(keys.S2_20M, name)] = punch_holes(image_20m, holes_at_scale(holes, 2))
        for name, images in tuples.s1.items():
            image = catalog.s1[images[index]]
            sample[keys.key(keys.S1, name)] = self._patch_10m(image.path, row, col, reference)
            sample[keys.key(keys.S1_TIMESTAMP, name)] = np.float64(image.acquired.timestamp())
        if self.with_dem:
            sample[keys.DEM] = self._patch_20m(catalog.dem, row, col, reference)
        return sample
