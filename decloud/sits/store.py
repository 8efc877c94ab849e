"""The chunked on-disk store of per-pixel time series (Zarr), and the ``.npy`` layout of small areas.

Why Zarr: a tile is 10980 x 10980 pixels x ~70 dates x 10 bands (about 170 GB as int16), far more than
memory; Zarr keeps an N-dimensional array as independently compressed chunks in a plain folder, so one
window is written or read without touching the rest, by any number of readers, with no server and no
single-file locking (unlike HDF5), and it is a maintained, specified format read by xarray, dask and GDAL.

Chunking: one chunk holds *all the dates and all the bands* of a CHUNK_SIDE x CHUNK_SIDE block of pixels
(``(T, 128, 128, C)``). Every consumer wants whole series of neighbouring pixels (training draws pixels and
needs all their dates; the maps encode windows of pixels), so a window read touches only the chunks under
it and never a chunk it does not need; 128 pixels is two elementary patches, so chunks follow the patch
grid, and a chunk of 70 dates is about 23 MB before compression (a few MB after), large enough for cheap
file-system access and small enough to hold a handful in memory.

Layout of ``<name>.zarr``::

    zarr.json                      group attributes: format, version, tile, CRS, transform, size,
                                   origin in the tile grid, and per source its bands, dates, day numbers,
                                   reference year, band mean and standard deviation over valid observations
    <source>/values                (T, H, W, C) int16, prepared values as read (no-data included)
    <source>/valid                 (T, H, W) bool, 1 where the observation is valid

Pixels of the store are traceable: store pixel (row, col) is pixel (origin_row + row, origin_col + col)
of the tile's products.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import zarr
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from zarr.codecs import ZstdCodec

from decloud.core.atomic import atomic_directory, outputs_to_write, skip_message
from decloud.core.errors import InputNotFoundError, InvalidArgumentError, InvalidFileError
from decloud.core.io_threads import IOThreads
from decloud.core.progress import progress
from decloud.core.raster import Grid
from decloud.sits.dates import days_of_season
from decloud.sits.observations import ObservationSource

log = logging.getLogger(__name__)

STORE_FORMAT = "decloud-sits-series"
STORE_VERSION = 1
#: Side, in pixels, of the chunks (all dates and bands of a CHUNK_SIDE x CHUNK_SIDE block).
CHUNK_SIDE = 128
#: Side of the windows extraction reads and writes at once (a multiple of CHUNK_SIDE): with 70 dates and 10
#: bands a window is 90 MB of int16, whatever the tile size.
EXTRACTION_WINDOW = 256
#: Zstandard level of the chunks. On real Sentinel-2 series level 1 compresses as well as the default (3: 2.19 vs
#: 2.12 on the eo-learn series) about twice as fast; LZ4 with byte shuffling is faster still but stores 1.5 times
#: more (ratio 1.45), and a store is written once and read by every training and map.
ZSTD_LEVEL = 1
#: Largest ``.npy`` export (bands.npy bytes): the layout loads whole arrays, for small areas only.
NPY_EXPORT_LIMIT = 2 * 1024**3
#: File names of the ``.npy`` layout.
NPY_FILES = ("bands.npy", "masks.npy", "doys.npy", "band_mean.npy", "band_std.npy")


@dataclass(frozen=True)
class SourceInfo:
    """What the store knows of one source's series."""

    name: str
    bands: tuple[str, ...]
    nodata: int
    dates: tuple[str, ...] | None  #: ISO dates; None for series imported from ``.npy`` (day numbers only)
    doys: np.ndarray  #: (T,) int16 day numbers (decloud.sits.dates)
    reference_year: int | None
    band_mean: np.ndarray  #: (C,) float32, over valid observations
    band_std: np.ndarray  #: (C,) float32

    def to_json(self) -> dict:
        return {
            "bands": list(self.bands),
            "nodata": self.nodata,
            "dates": None if self.dates is None else list(self.dates),
            "doys": [int(value) for value in self.doys],
            "reference_year": self.reference_year,
            "band_mean": [float(value) for value in self.band_mean],
            "band_std": [float(value) for value in self.band_std],
        }

    @classmethod
    def from_json(cls, name: str, content: dict) -> SourceInfo:
        return cls(
            name,
            tuple(content["bands"]),
            int(content["nodata"]),
            None if content["dates"] is None else tuple(content["dates"]),
            np.asarray(content["doys"], np.int16),
            content["reference_year"],
            np.asarray(content["band_mean"], np.float32),
            np.asarray(content["band_std"], np.float32),
        )


class SeriesStore:
    """A series store opened for reading."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputNotFoundError(self.path, "time-series store")
        try:
            self.group = zarr.open_group(str(self.path), mode="r")
            attributes = dict(self.group.attrs)
        except (FileNotFoundError, ValueError, KeyError) as error:
            raise InvalidFileError(self.path, f"not a time-series store ({error})") from error
        if attributes.get("format") != STORE_FORMAT or attributes.get("version") != STORE_VERSION:
            raise InvalidFileError(self.path, f"not a time-series store of version {STORE_VERSION}")
        self.tile: str = attributes["tile"]
        self.grid = Grid(
            CRS.from_wkt(attributes["crs"]) if attributes["crs"] else None,
            Affine(*attributes["transform"]),
            attributes["width"],
            attributes["height"],
        )
        self.origin: tuple[int, int] = tuple(attributes["origin"])
        self.sources = {name: SourceInfo.from_json(name, info) for name, info in attributes["sources"].items()}

    def read(self, source: str, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Values (T, rows, cols, C) int16 and validity (T, rows, cols) bool of ``source`` over ``window``."""
        if source not in self.sources:
            raise InvalidArgumentError(f"{self.path} has no source {source!r} (it has {sorted(self.sources)})")
        rows, cols = _slices(window, self.grid)
        return self.group[f"{source}/values"][:, rows, cols], self.group[f"{source}/valid"][:, rows, cols]

    def read_pixels(self, source: str, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values (T, len(rows), len(cols), C) and validity (T, len(rows), len(cols)) of the pixels at every
        (row, col) of the given rows and columns (a lattice), reading one chunk at a time."""
        if source not in self.sources:
            raise InvalidArgumentError(f"{self.path} has no source {source!r} (it has {sorted(self.sources)})")
        selection = (slice(None), np.asarray(rows), np.asarray(cols))
        return self.group[f"{source}/values"].oindex[selection], self.group[f"{source}/valid"].oindex[selection]


def _slices(window: Window | None, grid: Grid) -> tuple[slice, slice]:
    if window is None:
        return slice(0, grid.height), slice(0, grid.width)
    rows, cols = window.toslices()
    if rows.start < 0 or cols.start < 0 or rows.stop > grid.height or cols.stop > grid.width:
        raise InvalidArgumentError(f"window {window} is outside the {grid.height}x{grid.width} store")
    return rows, cols


def _new_group(path: Path, tile: str, grid: Grid, origin: tuple[int, int]) -> zarr.Group:
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.attrs.update(
        {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "tile": tile,
            "crs": grid.crs.to_wkt() if grid.crs else None,
            "transform": list(grid.transform)[:6],
            "width": grid.width,
            "height": grid.height,
            "origin": list(origin),
            "sources": {},
        }
    )
    return group


def _new_arrays(group: zarr.Group, name: str, dates: int, grid: Grid, bands: int, nodata: int) -> tuple:
    chunks = (dates, min(CHUNK_SIDE, grid.height), min(CHUNK_SIDE, grid.width))
    values = group.create_array(
        f"{name}/values",
        shape=(dates, grid.height, grid.width, bands),
        chunks=(*chunks, bands),
        dtype="int16",
        fill_value=nodata,
        compressors=ZstdCodec(level=ZSTD_LEVEL),
    )
    valid = group.create_array(
        f"{name}/valid",
        shape=(dates, grid.height, grid.width),
        chunks=chunks,
        dtype="bool",
        compressors=ZstdCodec(level=ZSTD_LEVEL),
    )
    return values, valid


def _set_source(group: zarr.Group, info: SourceInfo) -> None:
    sources = dict(group.attrs["sources"])
    sources[info.name] = info.to_json()
    group.attrs["sources"] = sources


class _BandMoments:
    """Mean and standard deviation per band over the valid observations, accumulated window by window."""

    def __init__(self, bands: int) -> None:
        self.count = 0
        self.total = np.zeros(bands)
        self.squares = np.zeros(bands)

    def add(self, values: np.ndarray, valid: np.ndarray) -> None:
        # Exact integer sums (int16 squares fit int32, their sums int64); einsum reduces in one pass per sum.
        selected = values[valid].astype(np.int32)
        self.count += len(selected)
        self.total += np.einsum("nc->c", selected, dtype=np.int64)
        self.squares += np.einsum("nc,nc->c", selected, selected, dtype=np.int64)

    def merge(self, other: _BandMoments) -> None:
        self.count += other.count
        self.total += other.total
        self.squares += other.squares

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count == 0:
            return np.zeros_like(self.total, np.float32), np.ones_like(self.total, np.float32)
        mean = self.total / self.count
        return mean.astype(np.float32), np.sqrt(np.maximum(self.squares / self.count - mean**2, 0)).astype(np.float32)


def _read_ahead(read: Callable[[Window], _Read], windows: Sequence[Window]) -> Iterator[_Read]:
    """``read`` of the windows, in order, each run by one thread while the caller writes the previous one (GDAL's
    decoding and the band moments then share the cores with Zarr's compression); at most two windows are in
    memory."""
    with IOThreads("decloud-series-reader") as pool:
        pending = pool.submit(read, windows[0]) if windows else None
        for index in range(len(windows)):
            ready = pending.result()
            pending = pool.submit(read, windows[index + 1]) if index + 1 < len(windows) else None
            yield ready


_Read = tuple[np.ndarray, np.ndarray, _BandMoments]


def _read_measured(source: ObservationSource, window: Window) -> _Read:
    """A window of the source, with the band moments of its valid observations."""
    values, valid = source.read(window)
    moments = _BandMoments(len(source.bands))
    moments.add(values, valid)
    return values, valid, moments


def _to_write(path: Path, overwrite: bool) -> bool:
    """Whether to write the store ``path`` (the rule of every output: a store of ours is skipped, or replaced with
    ``overwrite``); anything else there, a folder of decloud's that is not a store included, is never replaced."""
    write = outputs_to_write([path], overwrite)
    if path.is_dir() and any(path.iterdir()):
        try:
            SeriesStore(path)
        except (InvalidFileError, InputNotFoundError) as error:
            raise InvalidArgumentError(f"{path} exists and is not a time-series store: not replaced") from error
    return write


def extract_series(
    sources: Sequence[ObservationSource],
    out_path: str | os.PathLike[str],
    *,
    window: Window | None = None,
    reference_year: int | None = None,
    window_size: int = EXTRACTION_WINDOW,
    overwrite: bool = False,
) -> Path:
    """Write the series of ``sources`` over ``window`` of their tile (all of it by default) to a new store,
    window by window; return its path. Day numbers count from 1 January of ``reference_year`` (the year of the
    earliest observation by default)."""
    out = Path(out_path)
    if not sources:
        raise InvalidArgumentError("no source of observations given")
    if window_size <= 0 or window_size % CHUNK_SIDE:
        raise InvalidArgumentError(f"window size {window_size} is not a positive multiple of {CHUNK_SIDE}")
    first = sources[0]
    for source in sources[1:]:
        if source.tile != first.tile or not source.grid.same_as(first.grid):
            raise InvalidArgumentError(f"source {source.name} is not on the grid of tile {first.tile}")
    if not _to_write(out, overwrite):
        log.info(skip_message([out]))
        return out
    full = Window(0, 0, first.grid.width, first.grid.height)
    area = full if window is None else window.intersection(full)
    if window is not None and (area.width != window.width or area.height != window.height):
        raise InvalidArgumentError(f"window {window} is not inside the {first.grid.height}x{first.grid.width} tile")
    origin = (int(area.row_off), int(area.col_off))
    grid = Grid(
        first.grid.crs,
        first.grid.transform @ Affine.translation(origin[1], origin[0]),
        int(area.width),
        int(area.height),
    )
    year = reference_year if reference_year is not None else min(min(s.dates) for s in sources).year
    with atomic_directory(out) as work:
        group = _new_group(work, first.tile, grid, origin)
        for source in sources:
            values_array, valid_array = _new_arrays(
                group, source.name, len(source.dates), grid, len(source.bands), source.nodata
            )
            moments = _BandMoments(len(source.bands))
            windows = [
                Window(col, row, min(window_size, grid.width - col), min(window_size, grid.height - row))
                for row in range(0, grid.height, window_size)
                for col in range(0, grid.width, window_size)
            ]
            tile_windows = [Window(w.col_off + origin[1], w.row_off + origin[0], w.width, w.height) for w in windows]
            read = partial(_read_measured, source)
            with closing(_read_ahead(read, tile_windows)) as series:  # the reader has stopped when this exits
                for part, (values, valid, part_moments) in zip(
                    progress(windows, desc=f"{source.name} series"), series, strict=True
                ):
                    rows, cols = part.toslices()
                    values_array[:, rows, cols] = values
                    valid_array[:, rows, cols] = valid
                    moments.merge(part_moments)
            mean, std = moments.result()
            doys = np.asarray(days_of_season(source.dates, year), np.int16)
            dates = tuple(date.date().isoformat() for date in source.dates)
            _set_source(group, SourceInfo(source.name, source.bands, source.nodata, dates, doys, year, mean, std))
    log.info("wrote %s (%s, %dx%d pixels)", out, first.tile, grid.height, grid.width)
    return out


def export_npy(
    store: SeriesStore, out_dir: str | os.PathLike[str], *, source: str = "s2", window: Window | None = None
) -> Path:
    """Write the ``.npy`` layout of ``window`` of the store (bands (T, H, W, C) int16, masks (T, H, W) uint8 with
    1 = valid, doys (T,) int16, band_mean and band_std (C,) float32) into a new folder ``out_dir``."""
    out = Path(out_dir)
    if out.exists():
        raise InvalidArgumentError(f"{out} exists: the .npy export writes a new folder")
    info = store.sources.get(source)
    if info is None:
        raise InvalidArgumentError(f"{store.path} has no source {source!r} (it has {sorted(store.sources)})")
    rows, cols = _slices(window, store.grid)
    size = len(info.doys) * (rows.stop - rows.start) * (cols.stop - cols.start) * len(info.bands) * 2
    if size > NPY_EXPORT_LIMIT:
        raise InvalidArgumentError(
            f"the .npy export of {size / 1024**3:.1f} GB is for small areas (at most "
            f"{NPY_EXPORT_LIMIT / 1024**3:.0f} GB): choose a smaller window"
        )
    values, valid = store.read(source, window)
    with atomic_directory(out) as work:
        np.save(work / "bands.npy", values.astype(np.int16))
        np.save(work / "masks.npy", valid.astype(np.uint8))
        np.save(work / "doys.npy", info.doys.astype(np.int16))
        np.save(work / "band_mean.npy", info.band_mean.astype(np.float32))
        np.save(work / "band_std.npy", info.band_std.astype(np.float32))
    return out


def import_npy(
    npy_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    tile: str,
    bands: Sequence[str],
    nodata: int,
    source: str = "s2",
    grid: Grid | None = None,
    overwrite: bool = False,
) -> Path:
    """A store from a folder of the ``.npy`` layout (as :func:`export_npy` writes it). Without ``grid`` the
    pixels get a unit grid with no CRS (the layout carries no georeference)."""
    folder, out = Path(npy_dir), Path(out_path)
    for name in NPY_FILES:
        if not (folder / name).is_file():
            raise InputNotFoundError(folder / name, "file of the .npy layout")
    values = np.load(folder / "bands.npy", mmap_mode="r")
    masks = np.load(folder / "masks.npy", mmap_mode="r")
    doys = np.load(folder / "doys.npy")
    mean, std = np.load(folder / "band_mean.npy"), np.load(folder / "band_std.npy")
    if values.ndim != 4 or values.dtype != np.int16:
        raise InvalidFileError(folder / "bands.npy", f"expected (T, H, W, C) int16, not {values.shape} {values.dtype}")
    count, height, width, channels = values.shape
    expected = {
        "masks.npy": (masks.shape, (count, height, width)),
        "doys.npy": (doys.shape, (count,)),
        "band_mean.npy": (mean.shape, (channels,)),
        "band_std.npy": (std.shape, (channels,)),
    }
    for name, (shape, wanted) in expected.items():
        if shape != wanted:
            raise InvalidFileError(folder / name, f"shape {shape} does not match bands.npy (expected {wanted})")
    if len(bands) != channels:
        raise InvalidArgumentError(f"{len(bands)} band names for the {channels} bands of {folder / 'bands.npy'}")
    grid = grid or Grid(None, Affine.identity(), width, height)
    if (grid.height, grid.width) != (height, width):
        raise InvalidArgumentError(f"grid {grid.describe()} is not the {height}x{width} size of {folder}")
    if not _to_write(out, overwrite):
        log.info(skip_message([out]))
        return out
    with atomic_directory(out) as work:
        group = _new_group(work, tile, grid, (0, 0))
        values_array, valid_array = _new_arrays(group, source, count, grid, channels, nodata)
        for row in range(0, height, EXTRACTION_WINDOW):
            rows = slice(row, min(row + EXTRACTION_WINDOW, height))
            values_array[:, rows] = values[:, rows]
            valid_array[:, rows] = masks[:, rows] != 0
        info = SourceInfo(
            source,
            tuple(bands),
            nodata,
            None,
            doys.astype(np.int16),
            None,
            mean.astype(np.float32),
            std.astype(np.float32),
        )
        _set_source(group, info)
    return out
