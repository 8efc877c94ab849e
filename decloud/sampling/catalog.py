"""The catalog of the prepared products of each tile: every Sentinel-2 product and Sentinel-1 image with
its date and its per-patch statistics (cloud percentage, no-data count), and the tile's DEM.

Reading hundreds of statistics rasters takes time, so each tile's catalog is kept on disk as an index
(``<catalog_dir>/<TILE>.npz``). A later run lists the product folders (cheap), reuses the statistics of
products whose completion marker or statistics file is unchanged, and reads only new or changed ones.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from decloud.core.atomic import COMPLETION_MARKER, atomic_file
from decloud.core.constants import S2_SUFFIX_CLOUD_STATS, S2_SUFFIX_NODATA_STATS
from decloud.core.errors import GridMismatchError, InputNotFoundError
from decloud.core.products import S1Image, S2Product, prepared_s1_series, prepared_s2_series
from decloud.core.progress import progress
from decloud.core.raster import Grid, open_raster, read_window
from decloud.preprocessing.tiles import TilesConfig

log = logging.getLogger(__name__)

#: Version of the on-disk index layout; an index of another version is rebuilt.
INDEX_VERSION = 1


@dataclass
class TileCatalog:
    """Products of one tile, sorted by date, with their statistics on the elementary patch grid."""

    tile: str
    grid: Grid  #: the elementary patch grid (one pixel per 64x64 patch)
    s2: list[S2Product]
    s2_cloud_percent: np.ndarray  #: (n_s2, rows, cols) float32
    s2_nodata_count: np.ndarray  #: (n_s2, rows, cols) uint16
    s1: list[S1Image] = field(default_factory=list)
    s1_nodata_count: np.ndarray | None = None  #: (n_s1, rows, cols) uint16
    dem: Path | None = None

    @property
    def s2_timestamps(self) -> np.ndarray:
        return np.array([product.acquired.timestamp() for product in self.s2], dtype=np.float64)

    @property
    def s1_timestamps(self) -> np.ndarray:
        return np.array([image.acquired.timestamp() for image in self.s1], dtype=np.float64)


def _signature(path: Path) -> list[int]:
    """What tells that a file changed: its modification time and size."""
    status = path.stat()
    return [status.st_mtime_ns, status.st_size]


def _find_s2_products(tile_dir: Path) -> dict[str, tuple[S2Product, list[int]]]:
    """Complete prepared S2 products of a tile folder, by name, with the signature of their marker."""
    products = prepared_s2_series(tile_dir) if tile_dir.is_dir() else []
    return {product.name: (product, _signature(product.directory / COMPLETION_MARKER)) for product in products}


def _find_s1_images(tile_dir: Path) -> dict[str, tuple[S1Image, list[int]]]:
    """Prepared S1 images of a tile folder (those whose statistics file exists), by name."""
    images = prepared_s1_series(tile_dir) if tile_dir.is_dir() else []
    return {image.name: (image, _signature(image.nodata_stats)) for image in images if image.nodata_stats.is_file()}


def _read_stats(path: Path) -> np.ndarray:
    with open_raster(path) as dataset:
        return read_window(dataset, None, 1)


class _Index:
    """The on-disk index of a tile: per product name, its signature and its statistics arrays."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        self.changed = False
        if path.is_file():
            try:
                self._read(path)
            except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as error:
                # A truncated or foreign file (interrupted copy, disk full...): the statistics are read again.
                log.warning("%s is not a readable catalog index (%s): it is rebuilt", path, error)
                self.entries, self.changed = {}, True

    def _read(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as content:
            header = json.loads(str(content["header"]))
            if header.get("version") == INDEX_VERSION:
                for position, (name, signature) in enumerate(header["products"]):
                    self.entries[name] = {
                        "signature": signature,
                        "arrays": [content[f"{position}_{i}"] for i in range(header["arrays"][position])],
                    }

    def get(self, name: str, signature: list[int]) -> list[np.ndarray] | None:
        entry = self.entries.get(name)
        return entry["arrays"] if entry and entry["signature"] == signature else None

    def put(self, name: str, signature: list[int], arrays: list[np.ndarray]) -> None:
        self.entries[name] = {"signature": signature, "arrays": arrays}
        self.changed = True

    def keep_only(self, names: set[str]) -> None:
        for name in set(self.entries) - names:
            del self.entries[name]
            self.changed = True

    def save(self) -> None:
        items = sorted(self.entries.items())
        header = {
            "version": INDEX_VERSION,
            "products": [[name, entry["signature"]] for name, entry in items],
            "arrays": [len(entry["arrays"]) for _, entry in items],
        }
        arrays = {
            f"{position}_{i}": array
            for position, (_, entry) in enumerate(items)
            for i, array in enumerate(entry["arrays"])
        }
        with atomic_file(self.path) as temporary, temporary.open("wb") as file:
            np.savez(file, header=np.array(json.dumps(header)), **arrays)


def load_tile_catalog(config: TilesConfig, tile: str, catalog_dir: str | os.PathLike[str]) -> TileCatalog:
    """The catalog of ``tile``, from the on-disk index where it is up to date, reading what changed."""
    index = _Index(Path(catalog_dir) / f"{tile}.npz")
    s2_found = _find_s2_products(config.s2_root / tile)
    if not s2_found:
        raise InputNotFoundError(config.s2_root / tile, f"prepared Sentinel-2 product of {tile}")
    s1_found = _find_s1_images(config.s1_root / tile) if config.s1_root else {}
    read_count = 0

    def statistics(name: str, signature: list[int], paths: list[Path]) -> list[np.ndarray]:
        nonlocal read_count
        arrays = index.get(name, signature)
        if arrays is None:
            arrays = [_read_stats(path) for path in paths]
            index.put(name, signature, arrays)
            read_count += 1
        return arrays

    s2_items = sorted(s2_found.values(), key=lambda item: item[0].acquired)
    s1_items = sorted(s1_found.values(), key=lambda item: item[0].acquired)
    s2_stats = [
        statistics(p.name, sig, [p.file(S2_SUFFIX_CLOUD_STATS), p.file(S2_SUFFIX_NODATA_STATS)])
        for p, sig in progress(s2_items, desc=f"{tile} S2 statistics", unit="product")
    ]
    s1_stats = [
        statistics(image.name, sig, [image.nodata_stats])[0]
        for image, sig in progress(s1_items, desc=f"{tile} S1 statistics", unit="image")
    ]
    index.keep_only(set(s2_found) | set(s1_found))
    if index.changed:
        index.save()
    log.info(
        "%s: %d S2 products, %d S1 images (%d statistics files read, the rest from the index)",
        tile,
        len(s2_items),
        len(s1_items),
        read_count,
    )
    shape = _check_shapes(tile, [p.name for p, _ in s2_items] + [i.name for i, _ in s1_items], s2_stats, s1_stats)
    with open_raster(s2_items[0][0].file(S2_SUFFIX_CLOUD_STATS)) as first:
        grid = Grid.of(first)
    dem = config.dem_root / f"{tile}.tif" if config.dem_root else None
    if dem is not None and not dem.is_file():
        dem = None
    return TileCatalog(
        tile=tile,
        grid=grid,
        s2=[product for product, _ in s2_items],
        s2_cloud_percent=np.stack([cloud for cloud, _ in s2_stats]).astype(np.float32),
        s2_nodata_count=np.stack([nodata for _, nodata in s2_stats]).astype(np.uint16),
        s1=[image for image, _ in s1_items],
        s1_nodata_count=np.stack(s1_stats).astype(np.uint16) if s1_stats else np.zeros((0, *shape), np.uint16),
        dem=dem,
    )


def _check_shapes(tile: str, names: list[str], s2_stats: list, s1_stats: list) -> tuple[int, int]:
    """All products of a tile must share the patch grid; the error names the first that does not."""
    shapes = [stats[0].shape for stats in s2_stats] + [stats.shape for stats in s1_stats]
    for name, shape in zip(names, shapes, strict=True):
        if shape != shapes[0]:
            raise GridMismatchError(
                f"{tile}: {name} has a {shape[0]}x{shape[1]} patch grid, {names[0]} a {shapes[0][0]}x{shapes[0][1]} one"
            )
    return shapes[0]
