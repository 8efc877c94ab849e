"""The streaming inference engine: a model run over whole images of any size, tile by tile, from the
sources' rasters to GeoTIFF outputs.

For every tile of ``tile_size`` reference pixels, each input is read with a margin of ``pad`` pixels on
every side (its own window at its own scale: a 20 m input reads half the 10 m window). Where the margin
falls outside the image, the image is mirrored (symmetric), so results do not depend on the tiling and
the borders are kept. The model runs on the padded tile and the margin is cropped from its outputs.
Pixels where a required input has no data are no-data in the outputs; tiles with no valid pixel are
not computed at all.

Reading (a thread), computing (the calling thread) and writing (a writer thread) overlap, with at
most a few tiles in flight, so memory does not depend on the image size. Outputs are written under a
temporary name, tiled and compressed, optionally as Cloud Optimized GeoTIFFs with overviews, and renamed
when complete.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from decloud.core.atomic import atomic_file
from decloud.core.errors import InvalidArgumentError
from decloud.core.progress import progress
from decloud.core.raster import BLOCK_SIZE, Grid, create_geotiff, gdal_environment, geotiff_profile
from decloud.preprocessing.constants import S2_NODATA
from decloud.production.backends import ModelBackend
from decloud.production.sources import TileSource

log = logging.getLogger(__name__)

#: Tiles read ahead of the computation, and computed tiles waiting to be written.
TILES_IN_FLIGHT = 2
#: Model outputs are written as int16 in prepared units; -10000 is kept for no-data.
OUTPUT_RANGE = (S2_NODATA + 1, np.iinfo(np.int16).max)


@dataclass(frozen=True)
class OutputSpec:
    """One model output written to one GeoTIFF. ``scale`` is the output pixel size in reference pixels:
    1 for a 10 m output, 2 for a 20 m output, 0.5 for a x2 super-resolution."""

    name: str
    path: Path
    descriptions: Sequence[str]
    scale: float = 1

    def grid(self, reference: Grid) -> Grid:
        return Grid(
            reference.crs,
            reference.transform @ Affine.scale(self.scale),
            math.ceil(reference.width / self.scale),
            math.ceil(reference.height / self.scale),
        )


@dataclass(frozen=True)
class Tile:
    row: int
    col: int
    height: int
    width: int


@dataclass
class _TileResult:
    tile: Tile
    outputs: dict[str, np.ndarray] | None  #: None when the tile has no valid pixel
    valid: np.ndarray


def _scales(sources: Sequence[TileSource]) -> set[int]:
    return {scale for source in sources for scale in source.keys.values()}


def tiling_step(sources: Sequence[TileSource], outputs: Sequence[OutputSpec], size_multiple: int) -> int:
    """The multiple that tile sizes and margins must be: every input and output window must fall on
    whole pixels of its grid, and the model's size constraint must hold."""
    step = size_multiple
    for scale in _scales(sources) | {output.scale for output in outputs}:
        fraction = float(scale).as_integer_ratio()
        step = math.lcm(step, fraction[0])  # a 20 m grid needs even offsets; 0.5 needs nothing more
    return step


def tiles_of(reference: Grid, tile_size: int) -> list[Tile]:
    return [
        Tile(row, col, min(tile_size, reference.height - row), min(tile_size, reference.width - col))
        for row in range(0, reference.height, tile_size)
        for col in range(0, reference.width, tile_size)
    ]


def _mirror_read(source: TileSource, row: int, col: int, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The source's keys over the square window (row, col, size) of the reference grid, each at its scale,
    with the parts outside the image mirrored."""
    windows, pads = {}, {}
    for scale in set(source.keys.values()):
        rows, cols = source.shape(scale)
        top, left, length = row // scale, col // scale, size // scale
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + length, rows), min(left + length, cols)
        windows[scale] = Window(c0, r0, c1 - c0, r1 - r0)
        pads[scale] = ((r0 - top, top + length - r1), (c0 - left, left + length - c1))
    data = source.read(windows)
    mirrored = {}
    for key, scale in source.keys.items():
        pad = pads[scale]
        values = np.pad(data[key].values, (*pad, (0, 0)), mode="symmetric")
        mirrored[key] = (values, np.pad(data[key].valid, pad, mode="symmetric"))
    return mirrored


def _resample_mask(valid: np.ndarray, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """A validity mask on a grid ``factor`` times coarser (a coarse pixel is valid when all its fine
    pixels are) or finer (factor < 1), cut to ``shape``."""
    if factor > 1:
        step = int(factor)
        rows, cols = -(-valid.shape[0] // step) * step, -(-valid.shape[1] // step) * step
        padded = np.pad(valid, ((0, rows - valid.shape[0]), (0, cols - valid.shape[1])), mode="edge")
        valid = padded.reshape(rows // step, step, cols // step, step).all(axis=(1, 3))
    elif factor < 1:
        repeat = round(1 / factor)
        valid = valid.repeat(repeat, axis=0).repeat(repeat, axis=1)
    return valid[: shape[0], : shape[1]]


class StreamingEngine:
    """Runs ``model`` over the reference grid, feeding it the ``sources``' keys, writing ``outputs``.

    ``required`` names the keys whose no-data makes an output pixel no-data (all keys by default).
    """

    def __init__(
        self,
        model: ModelBackend,
        sources: Sequence[TileSource],
        reference: Grid,
        outputs: Sequence[OutputSpec],
        *,
        tile_size: int = 512,
        pad: int = 64,
        required: Collection[str] | None = None,
        size_multiple: int = 1,
        model_name: str = "model",
    ) -> None:
        self.model, self.sources, self.reference, self.outputs = model, list(sources), reference, list(outputs)
        self.keys = {key: scale for source in self.sources for key, scale in source.keys.items()}
        self.required = set(self.keys if required is None else required)
        unknown = self.required - set(self.keys)
        if unknown:
            raise InvalidArgumentError(f"required keys {sorted(unknown)} are not fed by any source")
        model.check(list(self.keys), [output.name for output in self.outputs], model_name)
        step = tiling_step(self.sources, self.outputs, size_multiple)
        for name, value in (("tile size", tile_size), ("margin (pad)", pad)):
            if value < 0 or value % step or (name == "tile size" and value == 0):
                raise InvalidArgumentError(f"{name} {value} must be a positive multiple of {step} for this model")
        # A small image needs no tile larger than itself (rounded up to the step).
        self.tile_size = min(tile_size, -(-max(reference.height, reference.width) // step) * step)
        self.pad = pad

    def prepare(self, tile: Tile) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Model inputs (1, n, n, channels) float32 of a tile with its margins, and the validity of its core
        pixels on the reference grid."""
        size = self.tile_size + 2 * self.pad
        inputs, valid = {}, np.ones((tile.height, tile.width), dtype=bool)
        for source in self.sources:
            for key, (values, key_valid) in _mirror_read(
                source, tile.row - self.pad, tile.col - self.pad, size
            ).items():
                inputs[key] = values[np.newaxis]
                if key in self.required:
                    scale = self.keys[key]
                    core = key_valid[self.pad // scale :, self.pad // scale :]
                    valid &= _resample_mask(core, 1 / scale, valid.shape)
        return inputs, valid

    def compute(self, tile: Tile, inputs: dict[str, np.ndarray], valid: np.ndarray) -> _TileResult:
        if not valid.any():
            return _TileResult(tile, None, valid)
        results = self.model.run(inputs, [output.name for output in self.outputs])
        cropped = {}
        for output in self.outputs:
            margin = int(self.pad / output.scale)
            rows, cols = math.ceil(tile.height / output.scale), math.ceil(tile.width / output.scale)
            array = results[output.name][0, margin : margin + rows, margin : margin + cols]
            if array.shape[:2] != (rows, cols):
                raise InvalidArgumentError(
                    f"output {output.name} is {results[output.name].shape[1:3]} for an input of "
                    f"{self.tile_size + 2 * self.pad} pixels: not the expected output scale {output.scale}"
                )
            cropped[output.name] = array
        return _TileResult(tile, cropped, valid)

    def _prepared_tiles(self, tiles: Sequence[Tile]) -> Iterator[tuple[Tile, dict, np.ndarray]]:
        """Tiles with their inputs, read ahead of the computation, in order, by one thread (the sources'
        datasets are not thread-safe)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = deque()
            remaining = iter(tiles)
            try:
                for tile in remaining:
                    pending.append((tile, pool.submit(self.prepare, tile)))
                    if len(pending) > TILES_IN_FLIGHT:
                        ready, future = pending.popleft()
                        yield ready, *future.result()
                while pending:
                    ready, future = pending.popleft()
                    yield ready, *future.result()
            finally:
                for _, future in pending:
                    future.cancel()

    def run(self, *, cog: bool = False) -> list[Path]:
        """Compute and write every output; return their paths."""
        tiles = tiles_of(self.reference, self.tile_size)
        with gdal_environment(), ExitStack() as stack:
            datasets, conversions = {}, []
            for output in self.outputs:
                grid = output.grid(self.reference)
                destination = stack.enter_context(atomic_file(output.path))
                written = destination
                if cog:  # streamed into a plain tiled GeoTIFF, then copied as a COG with overviews
                    written = destination.with_name(destination.name + ".stream.tif")
                    stack.callback(written.unlink, missing_ok=True)
                    conversions.append((written, destination))
                profile = geotiff_profile(
                    width=grid.width,
                    height=grid.height,
                    count=len(output.descriptions),
                    dtype="int16",
                    crs=grid.crs,
                    transform=grid.transform,
                    nodata=S2_NODATA,
                )
                datasets[output.name] = create_geotiff(written, profile, output.descriptions)
                stack.callback(datasets[output.name].close)
            self._stream(tiles, datasets)
            for dataset in datasets.values():
                dataset.close()
            for written, destination in conversions:
                rasterio.shutil.copy(
                    written, destination, driver="COG", compress="deflate", blocksize=BLOCK_SIZE, overviews="auto"
                )
        log.info("wrote %s", ", ".join(str(output.path) for output in self.outputs))
        return [output.path for output in self.outputs]

    def _stream(self, tiles: Sequence[Tile], datasets: dict) -> None:
        results: queue.Queue[_TileResult | None] = queue.Queue(maxsize=TILES_IN_FLIGHT)
        failure: list[BaseException] = []

        def write_results() -> None:
            try:
                while (result := results.get()) is not None:
                    self._write(result, datasets)
            except BaseException as error:  # handed over to the main thread, which re-raises it
                failure.append(error)
                while results.get() is not None:  # keep draining so that the producer never blocks
                    pass

        writer = threading.Thread(target=write_results, name="decloud-writer")
        writer.start()
        try:
            for tile, inputs, valid in progress(
                self._prepared_tiles(tiles), desc="inference", total=len(tiles), unit="tile"
            ):
                if failure:
                    break
                results.put(self.compute(tile, inputs, valid))
        finally:
            results.put(None)
            writer.join()
        if failure:
            raise failure[0]

    def _write(self, result: _TileResult, datasets: dict) -> None:
        tile = result.tile
        for output in self.outputs:
            dataset = datasets[output.name]
            row, col = int(tile.row / output.scale), int(tile.col / output.scale)
            rows = min(math.ceil(tile.height / output.scale), dataset.height - row)
            cols = min(math.ceil(tile.width / output.scale), dataset.width - col)
            valid = _resample_mask(result.valid, output.scale, (rows, cols))
            if result.outputs is None:
                values = np.full((rows, cols, dataset.count), S2_NODATA, dtype=np.int16)
            else:
                array = np.clip(np.rint(result.outputs[output.name][:rows, :cols]), *OUTPUT_RANGE)
                values = np.where(valid[..., np.newaxis], array, S2_NODATA).astype(np.int16)
            dataset.write(np.moveaxis(values, -1, 0), window=Window(col, row, cols, rows))
