"""Thin raster I/O on rasterio: validated opening, grid checks, patch-aligned windows, the one
GeoTIFF profile every output uses (tiled, DEFLATE, BigTIFF when needed, no-data, band descriptions),
and the checked writing of outputs.

Nothing here reads a whole raster: callers iterate :func:`block_windows` and read or write window by
window, so memory stays bounded whatever the image size (a full Sentinel-2 tile is 10980x10980).

GDAL reports a failed write only sometimes: a block written while the image is streamed raises, but the
blocks still in its cache and the TIFF directory are written when the file is closed, and rasterio's
``close()`` does not raise when those writes fail (a full disk then leaves an unreadable file and no
error). So every GeoTIFF is written through :func:`written_geotiff` (or closed and checked with
:func:`verify_geotiff`), which checks where the file's blocks lie before it may be published, and every
write failure becomes an :class:`~decloud.core.errors.OutputWriteError` naming the file (a full disk said
as such).
"""

from __future__ import annotations

import errno
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Interleaving
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.windows import Window

from decloud.core.atomic import WRITER, WRITER_TAG, atomic_file
from decloud.core.constants import PATCH_SIZE
from decloud.core.errors import (
    CorruptRasterError,
    GridMismatchError,
    InputNotFoundError,
    InvalidArgumentError,
    OutputWriteError,
)

#: Default side of the windows that steps process at once: 1024x1024 pixels keeps every step's memory
#: in the tens of megabytes and is a multiple of the patch size and of the output block size.
DEFAULT_WINDOW_SIZE = 1024
#: Side of the internal tiles of every GeoTIFF written.
BLOCK_SIZE = 256
#: GDAL block cache of every step, in bytes (rasterio passes a bare number to GDAL as bytes: this was once 128, a
#: cache of 128 bytes that kept no block). GDAL's default (5 % of the RAM) lets written blocks pile up until a file
#: is closed, so memory would grow with the image size; a fixed cache keeps it flat, and keeps the blocks that
#: neighbouring windows read again, e.g. 64-pixel sampling patches out of 256-pixel blocks (the demo's records
#: were written in 9.3 s instead of 15.3). The streaming engine sets its own (``STREAMING_GDAL_CACHE_BYTES``).
GDAL_CACHE_BYTES = 128 * 2**20
#: Compression of the files written while a model runs (the streaming engine's outputs), where every CPU cycle
#: of the writer is taken from the model: ZSTD level 1 compresses 10-band int16 images in 0.57 x (2000 pixels a side)
#: to 0.81 x (4000) the CPU time of DEFLATE level 1, into files 2 % larger (``benchmarks/bench_write_verification.py``).
#: Readable by GDAL 2.3 and later built with zstd, as the GDAL of QGIS and OTB packages is (Debian 12's OTB 8.1.1
#: reads them); ``--cog`` copies them as DEFLATE Cloud Optimized GeoTIFFs for any other reader.
FAST_COMPRESSION = {"compress": "zstd", "zstd_level": 1}
#: A write that fails while the output's file system has less free space than this is reported as a full
#: disk: the largest block decloud writes (256 x 256 pixels x 6 bands x 8 bytes, uncompressed) is 3 MB, so
#: with less than that free the next block may not fit.
FULL_DISK_BYTES = 4 * 1024 * 1024


def gdal_environment(cache_bytes: int = GDAL_CACHE_BYTES) -> rasterio.Env:
    """The GDAL settings every step runs under (use as a context manager); a step may size GDAL's block cache
    otherwise."""
    return rasterio.Env(GDAL_CACHEMAX=cache_bytes)


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
    """Check that all ``datasets`` share one grid and return it. The error names a file that is off the grid
    most of them share (the first dataset's grid when no grid has a majority), so that one bad band is the
    band named, whatever its place in the list."""
    grids = [Grid.of(dataset) for dataset in datasets]
    reference = max(grids, key=lambda grid: sum(grid.same_as(other) for other in grids))
    holder = next(dataset for dataset, grid in zip(datasets, grids, strict=True) if grid.same_as(reference))
    for dataset, grid in zip(datasets, grids, strict=True):
        if not grid.same_as(reference):
            raise GridMismatchError(
                f"{dataset.name} is not on the grid of {holder.name}: "
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
    fast_compression: bool = False,
    band_interleaved: bool = False,
) -> dict[str, Any]:
    """The creation profile of every GeoTIFF decloud writes: tiled, compressed with a predictor suited
    to the data type, BigTIFF when the file could pass 4 GB. DEFLATE (level 6, GDAL's default) by default;
    ``fast_compression``: ZSTD level 1 (FAST_COMPRESSION). ``band_interleaved`` stores each band in its own
    tiles instead of the bands of a pixel side by side: for the int16 outputs of the models, files about a
    quarter smaller, compressed in a fifth less CPU time (``benchmarks/bench_write_verification.py``)."""
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
    if fast_compression:
        profile.update(FAST_COMPRESSION)
    if nodata is not None:
        profile["nodata"] = nodata
    if band_interleaved:
        profile["interleave"] = "band"
    return profile


def _free_bytes(path: Path) -> int | None:
    """Free space for unprivileged users on the file system of ``path``'s folder (None if unknown)."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def _gdal_reason(error: BaseException) -> str:
    """GDAL's own message: rasterio raises a generic "Write failed" whose cause holds it."""
    return str(error.__cause__ or error)


def write_failure(path: str | os.PathLike[str], reason: BaseException | str) -> OutputWriteError:
    """The error of a failed write of ``path``. A full disk (errno ENOSPC, GDAL's message, or almost no
    space left where the file was being written) is said as such: it is the usual cause, and one the
    user can fix."""
    path = Path(path)
    text = _gdal_reason(reason) if isinstance(reason, BaseException) else reason
    free = _free_bytes(path)
    full = (
        (isinstance(reason, OSError) and reason.errno == errno.ENOSPC)
        or os.strerror(errno.ENOSPC) in text
        or (free is not None and free < FULL_DISK_BYTES)
    )
    if full:
        free_text = "" if free is None else f", {free // 1024} KB free"
        return OutputWriteError(path, f"no space left on device{free_text} ({text})")
    return OutputWriteError(path, text)


def create_geotiff(
    path: str | os.PathLike[str],
    profile: dict[str, Any],
    descriptions: Sequence[str] | None = None,
    tags: dict[str, Any] | None = None,
) -> DatasetWriter:
    """Create a GeoTIFF from a :func:`geotiff_profile`, with band descriptions and dataset tags.

    Close it with :func:`close_and_verify` (or use :func:`written_geotiff`) before publishing it."""
    if descriptions is not None and len(descriptions) != profile["count"]:
        raise InvalidArgumentError(f"{len(descriptions)} band descriptions for {profile['count']} bands")
    try:
        dataset = rasterio.open(Path(path), "w", **profile)
    except RasterioError as error:
        raise write_failure(path, error) from error
    try:
        for index, description in enumerate(descriptions or (), start=1):
            dataset.set_band_description(index, description)
        dataset.update_tags(**{WRITER_TAG: WRITER}, **{key: str(value) for key, value in (tags or {}).items()})
    except RasterioError as error:
        dataset.close()
        raise write_failure(path, error) from error
    return dataset


def write_window(
    dataset: DatasetWriter,
    array: np.ndarray,
    indexes: int | Sequence[int] | None = None,
    window: Window | None = None,
) -> None:
    """Write ``array`` into ``window`` of ``dataset`` (all of it by default); a failure names the file."""
    try:
        dataset.write(array, indexes, window=window)
    except RasterioError as error:
        raise write_failure(dataset.name, error) from error


def verify_geotiff(path: str | os.PathLike[str]) -> None:
    """Check a GeoTIFF that was just closed, before it is published: its directory must read, and every block
    of every band must be recorded in it with a place of its own in the file (after the header, inside the
    file, overlapping no other block). Raises :class:`OutputWriteError` otherwise.

    What this catches is how a failed write of GDAL (which ``close()`` does not report) shows in a GeoTIFF:
    libtiff appends each block at the end of the file and records its size only once its write succeeded,
    then writes the directory. So a block whose write failed has no size (it would read back as zeros,
    without any error); a block cut short, or lost with the end of the file (a last write that failed),
    reaches past the end of the file; bytes lost in a write buffer leave the next block written over a block
    already recorded (the two overlap); a lost directory does not read. The pixels are not decoded again:
    that cost almost half the CPU time of writing the file (a model's output at DEFLATE level 1), for no
    failure these checks miss (``benchmarks/bench_write_verification.py``)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with rasterio.open(path) as dataset:
            _check_blocks_recorded(dataset, size)
    except RasterioError as error:  # before OSError: rasterio's I/O errors are OSErrors too
        raise write_failure(path, f"the file written does not read back: {_gdal_reason(error)}") from error
    except OSError as error:
        raise write_failure(path, error) from error


#: Bytes of the TIFF header (BigTIFF's, the larger): no block starts before its end.
TIFF_HEADER_BYTES = 16


def _check_blocks_recorded(dataset: DatasetReader, file_size: int) -> None:
    """Every block of ``dataset`` has an offset and a size in the TIFF directory that place it after the
    header, inside the file, and overlapping no other block (GDAL may point blocks that are all no-data to
    one copy of an empty block: blocks with the same offset and size are that copy)."""
    bands = [1] if dataset.interleaving == Interleaving.pixel else list(dataset.indexes)
    block_rows, block_cols = dataset.block_shapes[0]
    places = {}
    for band in bands:
        for row in range(math.ceil(dataset.height / block_rows)):
            for col in range(math.ceil(dataset.width / block_cols)):
                offset = int(dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band) or 0)
                length = int(dataset.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band) or 0)
                if offset < TIFF_HEADER_BYTES or length <= 0 or offset + length > file_size:
                    raise write_failure(
                        dataset.name,
                        f"block ({row}, {col}) of band {band} is missing or cut short in the file written",
                    )
                places.setdefault((offset, length), (row, col, band))
    end, previous = 0, None
    for (offset, length), block in sorted(places.items()):
        if offset < end:
            raise write_failure(
                dataset.name,
                f"block {block[:2]} of band {block[2]} lies over block {previous[:2]} of band {previous[2]} in "
                "the file written (bytes of a write were lost)",
            )
        end, previous = offset + length, block


def close_and_verify(dataset: DatasetWriter) -> None:
    """Close a GeoTIFF opened by :func:`create_geotiff` and check it with :func:`verify_geotiff`."""
    dataset.close()
    verify_geotiff(dataset.name)


@contextmanager
def written_geotiff(
    path: str | os.PathLike[str],
    profile: dict[str, Any],
    descriptions: Sequence[str] | None = None,
    tags: dict[str, Any] | None = None,
) -> Iterator[DatasetWriter]:
    """:func:`create_geotiff` as a context manager: when the block ends without error, the file is
    closed and verified (:func:`verify_geotiff`), so it may be published; on error it is only closed."""
    dataset = create_geotiff(path, profile, descriptions, tags)
    try:
        yield dataset
    except BaseException:
        dataset.close()
        raise
    close_and_verify(dataset)


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
    with written_geotiff(path, profile, descriptions, tags) as dataset:
        write_window(dataset, bands)


def write_png(canvas: np.ndarray, png: str | os.PathLike[str]) -> Path:
    """Write a (rows, cols, 3) uint8 picture as a PNG, atomically, signed in a text chunk like the GeoTIFFs (so
    a rerun recognises it as its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture, not a map
        with (
            atomic_file(png) as temporary,
            rasterio.open(
                temporary,
                "w",
                driver="PNG",
                width=canvas.shape[1],
                height=canvas.shape[0],
                count=3,
                dtype="uint8",
                WRITE_METADATA_AS_TEXT="YES",
            ) as output,
        ):
            output.write(np.moveaxis(canvas, -1, 0))
            output.update_tags(**{WRITER_TAG: WRITER})
    return Path(png)
