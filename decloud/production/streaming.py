"""The streaming inference engine: a model run over whole images of any size, chunk by chunk, from the
sources' rasters to GeoTIFF outputs.

For every chunk of ``chunk_size`` reference pixels, each input is read with a margin of ``pad`` pixels on
every side (its own window at its own scale: a 20 m input reads half the 10 m window). Where the margin
falls outside the image, the image is mirrored (symmetric), so results do not depend on the chunk size and
the borders are kept. The model runs on the padded chunk and the margin is cropped from its outputs.
Pixels where a required input has no data are no-data in the outputs; chunks with no valid pixel are
not computed at all.

Reading (a thread), running the model (the calling thread) and converting and writing its outputs (a writer
thread) overlap, with at most a few chunks in flight, so memory does not depend on the image size. The calling
thread only runs the model: whatever else it did would add to the run's time, while the model's own threads
leave the I/O threads some room on the cores. Outputs are written under a temporary name, tiled and compressed,
optionally as Cloud Optimized GeoTIFFs with overviews, and renamed when complete.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio.shutil
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.io import DatasetWriter
from rasterio.windows import Window

from decloud.core import keys
from decloud.core.atomic import atomic_file
from decloud.core.constants import S1_NODATA, S2_NODATA
from decloud.core.errors import DecloudError, InvalidArgumentError
from decloud.core.interrupts import interruptions_held
from decloud.core.io_threads import IOThreads
from decloud.core.progress import progress
from decloud.core.raster import (
    BLOCK_SIZE,
    Grid,
    close_and_verify,
    create_geotiff,
    gdal_environment,
    geotiff_profile,
    verify_geotiff,
    write_failure,
    write_window,
)
from decloud.production.backends import ModelBackend
from decloud.production.blending import at_scale, blend_kept, estimate_weights
from decloud.production.sources import InputSource

log = logging.getLogger(__name__)

#: Chunks read ahead of the computation, and computed chunks waiting to be written.
CHUNKS_IN_FLIGHT = 2
#: Model outputs are written as int16 in prepared units; -10000 is kept for no-data.
OUTPUT_RANGE = (S2_NODATA + 1, np.iinfo(np.int16).max)
#: GDAL block cache while a model streams: none. Written blocks then go to their file from the writer thread as
#: they are written. A cache saves decoding again the input blocks that the chunks' margins share (over a 4096²
#: product, 0.7 CPU-s of reading instead of 2.4), but the run as a whole costs more: ``benchmarks/bench_superres.py
#: --sizes 4096 --repeat 5`` gave 0.90 x the in-memory speed without a cache (CPU time ratio 0.84) and 0.82 with
#: the 128 MiB cache of the other steps (CPU time ratio 0.79).
STREAMING_GDAL_CACHE_BYTES = 0
#: Niceness added to the reading and writing threads.
IO_THREAD_NICENESS = 10
#: What ``--cog`` does, for the commands that stream a model.
COG_HELP = (
    "write Cloud Optimized GeoTIFFs with overviews, DEFLATE-compressed (readable by any GDAL; the default outputs "
    "are tiled GeoTIFFs compressed with Zstandard)"
)
#: Below this share of valid pixels in an output, the run warns that most of the image was not reconstructed.
FEW_VALID_SHARE = 0.05
#: No-data of the prepared inputs written as intermediate files, by type.
INPUT_NODATA = {"int16": S2_NODATA, "uint16": S1_NODATA, "float32": np.nan, "float64": np.nan}


class EmptyResultError(DecloudError):
    """A run would write an output without a single valid pixel: an error, not a success."""


def scaled_grid(reference: Grid, scale: float) -> Grid:
    """The grid whose pixel is ``scale`` reference pixels, with the reference's origin."""
    return Grid(
        reference.crs,
        reference.transform @ Affine.scale(scale),
        math.ceil(reference.width / scale),
        math.ceil(reference.height / scale),
    )


@dataclass(frozen=True)
class OutputSpec:
    """One model output written to one GeoTIFF. ``scale`` is the output pixel size in reference pixels:
    1 for a 10 m output, 2 for a 20 m output, 0.5 for a x2 super-resolution.

    With ``keep_input`` (an input key at the output's scale) and ``clear_key`` (an auxiliary key, 1 where
    the input is clear), clear valid pixels of the input are kept and only the others are estimated.

    By default the values are prepared units, rounded to int16 (no-data -10000). Other models' outputs
    (embeddings, class maps) give their ``dtype``, ``nodata`` and ``convert``, which turns the model's values
    (pixels, channels) of the valid pixels into the stored values (pixels, bands) (the default rounds
    prepared units); ``band_scales`` and ``band_offsets`` (physical value = stored x scale + offset),
    ``colormap`` (band 1) and ``tags`` are written in the GeoTIFF."""

    name: str
    path: Path
    descriptions: Sequence[str]
    scale: float = 1
    keep_input: str | None = None
    clear_key: str | None = None
    dtype: str = "int16"
    nodata: float = S2_NODATA
    convert: Callable[[np.ndarray], np.ndarray] | None = None
    band_scales: Sequence[float] | None = None
    band_offsets: Sequence[float] | None = None
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None
    tags: Mapping[str, str] | None = None


@dataclass(frozen=True)
class _Destination:
    """A GeoTIFF the engine writes: a model output, or a dump of a prepared input."""

    path: Path
    scale: float
    descriptions: Sequence[str]
    dtype: str
    nodata: float
    spec: OutputSpec | None = None  #: the output's, for a model output


@dataclass(frozen=True)
class Chunk:
    """A piece of the reference grid that the model runs on at once, with its margins: ``chunk_size`` pixels
    a side (``--ts``), less at the image's right and bottom edges. ("Tile" is kept for the Sentinel-2 tile.)"""

    row: int
    col: int
    height: int
    width: int


@dataclass
class _ChunkInputs:
    """A chunk's inputs, read with its margins, and the validity of its pixels."""

    chunk: Chunk
    inputs: dict[str, np.ndarray]  #: key -> (1, n, n, channels) float32, margins included
    key_valid: dict[str, np.ndarray]  #: key -> validity over the chunk, at the key's scale
    valid: np.ndarray  #: validity of the chunk's pixels on the reference grid (all required keys valid)


@dataclass
class _ChunkResult:
    chunk: Chunk
    arrays: dict[Path, np.ndarray]  #: destination -> (rows, cols, bands) values, ready to write


def _scales(sources: Sequence[InputSource]) -> set[int]:
    return {scale for source in sources for scale in source.keys.values()}


def chunk_step(sources: Sequence[InputSource], outputs: Sequence[OutputSpec], size_multiple: int) -> int:
    """The multiple that chunk sizes and margins must be: every input and output window must fall on
    whole pixels of its grid, and the model's size constraint must hold."""
    step = size_multiple
    for scale in _scales(sources) | {output.scale for output in outputs}:
        fraction = float(scale).as_integer_ratio()
        step = math.lcm(step, fraction[0])  # a 20 m grid needs even offsets; 0.5 needs nothing more
    return step


def chunks_of(reference: Grid, chunk_size: int) -> list[Chunk]:
    return [
        Chunk(row, col, min(chunk_size, reference.height - row), min(chunk_size, reference.width - col))
        for row in range(0, reference.height, chunk_size)
        for col in range(0, reference.width, chunk_size)
    ]


def _mirror_read(source: InputSource, row: int, col: int, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The source's keys over the square window (row, col, size) of the reference grid, each at its scale,
    with the parts outside the rasters mirrored."""
    windows, pads = {}, {}
    for scale in set(source.keys.values()):
        row_offset, col_offset, rows, cols = source.extent(scale)
        top, left, length = row // scale + row_offset, col // scale + col_offset, size // scale
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + length, rows), min(left + length, cols)
        windows[scale] = Window(c0, r0, c1 - c0, r1 - r0)
        pads[scale] = ((r0 - top, top + length - r1), (c0 - left, left + length - c1))
    data = source.read(windows)
    mirrored = {}
    for key, scale in source.keys.items():
        pad = pads[scale]
        if not any(any(side) for side in pad):  # inside the rasters: nothing to mirror
            mirrored[key] = (data[key].values, data[key].valid)
            continue
        values = np.pad(data[key].values, (*pad, (0, 0)), mode="symmetric")
        mirrored[key] = (values, np.pad(data[key].valid, pad, mode="symmetric"))
    return mirrored


def _to_output_values(estimate: np.ndarray, valid: np.ndarray, output: OutputSpec) -> np.ndarray:
    """Output values of a model estimate (rows, cols, bands), ``output.nodata`` where ``valid`` is false. The
    default conversion (prepared int16 units, clipped to the output range and rounded) works in place on one
    float copy, since the writer thread does this for every output pixel (a x2 super-resolution writes 40
    values per input pixel) beside the model's threads. That copy is made band by band, so that the values
    (rows, cols, bands) are a view of a contiguous (bands, rows, cols) array: the layout of the GeoTIFF's
    band-interleaved tiles, which GDAL then takes without reordering them."""
    if output.convert is not None:
        values = np.full((*valid.shape, len(output.descriptions)), output.nodata, output.dtype)
        values[valid] = output.convert(estimate[valid])
        return values
    bands = np.maximum(np.moveaxis(estimate, -1, 0), OUTPUT_RANGE[0])  # np.clip is twice as slow
    np.minimum(bands, OUTPUT_RANGE[1], out=bands)
    np.rint(bands, out=bands)
    values = bands.astype(output.dtype)
    if not valid.all():
        values[:, ~valid] = output.nodata
    return np.moveaxis(values, 0, -1)


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

    ``required`` names the keys whose no-data makes an output pixel no-data (all model inputs by default);
    with ``any_of``, a pixel is also no-data where all of those keys are.
    ``intermediate`` maps input keys to GeoTIFFs where the prepared inputs are written too (to inspect
    what the model was fed).
    """

    def __init__(
        self,
        model: ModelBackend,
        sources: Sequence[InputSource],
        reference: Grid,
        outputs: Sequence[OutputSpec],
        *,
        chunk_size: int = 512,
        pad: int = 64,
        required: Collection[str] | None = None,
        size_multiple: int = 1,
        model_name: str = "model",
        intermediate: dict[str, Path] | None = None,
        any_of: Collection[str] = (),
    ) -> None:
        self.model, self.sources, self.reference, self.outputs = model, list(sources), reference, list(outputs)
        self.keys = {key: scale for source in self.sources for key, scale in source.keys.items()}
        auxiliary = set().union(*(source.auxiliary for source in self.sources))
        self.model_keys = [key for key in self.keys if key not in auxiliary]
        self.required = set(self.model_keys if required is None else required)
        self.any_of = set(any_of)
        self.intermediate = dict(intermediate or {})
        for what, names in (("required", self.required), ("any_of", self.any_of), ("intermediate", self.intermediate)):
            unknown = set(names) - set(self.keys)
            if unknown:
                raise InvalidArgumentError(f"{what} keys {sorted(unknown)} are not fed by any source")
        for output in self.outputs:
            if output.keep_input and (
                self.keys.get(output.keep_input) != output.scale
                or output.clear_key not in auxiliary
                or (output.dtype, output.nodata) != ("int16", S2_NODATA)
            ):
                raise InvalidArgumentError(
                    f"output {output.name} keeps {output.keep_input}: it needs that input at its scale, an "
                    f"auxiliary clear mask ({output.clear_key}) and prepared int16 values"
                )
        model.check(self.model_keys, [output.name for output in self.outputs], model_name)
        step = chunk_step(self.sources, self.outputs, size_multiple)
        for name, value in (("chunk size", chunk_size), ("margin (pad)", pad)):
            if value < 0 or value % step or (name == "chunk size" and value == 0):
                raise InvalidArgumentError(f"{name} {value} must be a positive multiple of {step} for this model")
        # A small image needs no chunk larger than itself (rounded up to the step).
        self.chunk_size = min(chunk_size, -(-max(reference.height, reference.width) // step) * step)
        self.pad = pad
        self.destinations = {
            output.name: _Destination(
                output.path, output.scale, output.descriptions, output.dtype, output.nodata, output
            )
            for output in self.outputs
        }
        for key, path in self.intermediate.items():
            spec = keys.spec_of(key)
            names = [f"{key} band {band}" for band in range(1, (spec.channels or 1) + 1)]
            self.destinations[key] = _Destination(path, self.keys[key], names, spec.dtype, INPUT_NODATA[spec.dtype])

    def _core(self, array: np.ndarray, chunk: Chunk, scale: float) -> np.ndarray:
        """The part of a padded chunk array (rows, cols, ...) at ``scale`` that covers the chunk itself."""
        margin = int(self.pad / scale)
        return array[
            margin : margin + math.ceil(chunk.height / scale), margin : margin + math.ceil(chunk.width / scale)
        ]

    def prepare(self, chunk: Chunk) -> _ChunkInputs:
        """A chunk's inputs with their margins, and their validity."""
        size = self.chunk_size + 2 * self.pad
        inputs, key_valid = {}, {}
        valid = np.ones((chunk.height, chunk.width), dtype=bool)
        any_valid = np.zeros_like(valid) if self.any_of else np.ones_like(valid)
        for source in self.sources:
            corner = (chunk.row - self.pad, chunk.col - self.pad)
            for key, (values, mask) in _mirror_read(source, *corner, size).items():
                scale = self.keys[key]
                inputs[key] = values[np.newaxis].astype(np.float32)
                key_valid[key] = self._core(mask, chunk, scale)
                if key in self.required:
                    valid &= _resample_mask(key_valid[key], 1 / scale, valid.shape)
                if key in self.any_of:
                    any_valid |= _resample_mask(key_valid[key], 1 / scale, valid.shape)
        return _ChunkInputs(chunk, inputs, key_valid, valid & any_valid)

    def run_model(self, read: _ChunkInputs) -> dict[str, np.ndarray] | None:
        """The model's outputs on a chunk; None for a chunk without a valid pixel, which is not computed. A Ctrl-C
        or SIGTERM during the call is raised when it returns: raised in the Python code that TensorFlow calls back,
        it made TensorFlow print tracebacks of its own; and the model's own work, in C++, defers it anyway."""
        if not read.valid.any():
            return None
        names = [output.name for output in self.outputs]
        with interruptions_held():
            return self.model.run({key: read.inputs[key] for key in self.model_keys}, names)

    def to_write(self, read: _ChunkInputs, results: dict[str, np.ndarray] | None) -> _ChunkResult:
        """The arrays to write for a chunk, from the model's ``results``: model outputs (no-data where invalid;
        kept clear input pixels, even where the model could not run), and intermediate inputs."""
        chunk, inputs, key_valid, valid = read.chunk, read.inputs, read.key_valid, read.valid
        arrays = {}
        for output in self.outputs:
            shape = (math.ceil(chunk.height / output.scale), math.ceil(chunk.width / output.scale))
            if results is None:
                values = np.full((*shape, len(output.descriptions)), output.nodata, output.dtype)
                output_valid = np.zeros(shape, dtype=bool)
            else:
                estimate = self._core(results[output.name][0], chunk, output.scale)
                if estimate.shape[:2] != shape:
                    raise InvalidArgumentError(
                        f"output {output.name} is {results[output.name].shape[1:3]} for an input of "
                        f"{self.chunk_size + 2 * self.pad} pixels: not the expected output scale {output.scale}"
                    )
                output_valid = _resample_mask(valid, output.scale, shape)
                values = _to_output_values(estimate, output_valid, output)
            if output.keep_input:
                kept = self._core(inputs[output.keep_input][0], chunk, output.scale)
                padded_clear = inputs[output.clear_key][0, ..., 0] > 0.5  # weights see the clouds in the margins
                weights = at_scale(self._core(estimate_weights(~padded_clear), chunk, 1), output.scale, shape)
                clear = _resample_mask(self._core(padded_clear, chunk, 1), output.scale, shape)
                values = blend_kept(values, kept, key_valid[output.keep_input], clear, weights)
                output_valid = (values != S2_NODATA).any(axis=-1)
            arrays[self.destinations[output.name].path] = values
            self.valid_pixels[output.name] += int(np.count_nonzero(output_valid))
        for key in self.intermediate:
            destination = self.destinations[key]
            values = self._core(inputs[key][0], chunk, destination.scale)
            fill = np.where(key_valid[key][..., np.newaxis], values, destination.nodata)
            arrays[destination.path] = fill.astype(destination.dtype)
        return _ChunkResult(chunk, arrays)

    def _read_ahead(self, chunks: Sequence[Chunk], reader: IOThreads) -> Iterator[_ChunkInputs]:
        """The chunks' inputs, in order, read by ``reader`` (one thread: the sources' datasets are not
        thread-safe) up to CHUNKS_IN_FLIGHT chunks ahead of the computation."""
        pending = deque()
        for chunk in chunks:
            pending.append(reader.submit(self.prepare, chunk))
            if len(pending) > CHUNKS_IN_FLIGHT:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def run(self, *, cog: bool = False, before_publish: Callable[[dict[Path, Path]], None] | None = None) -> list[Path]:
        """Compute and write every destination; return the outputs' paths. ``before_publish`` is given the
        complete, verified files (final path -> temporary path) before they are published, to derive
        another output from them (a quicklook) that is published with them."""
        chunks = chunks_of(self.reference, self.chunk_size)
        self.valid_pixels = dict.fromkeys((output.name for output in self.outputs), 0)
        with gdal_environment(STREAMING_GDAL_CACHE_BYTES), ExitStack() as stack:
            datasets, conversions, complete = {}, [], {}
            for destination in self.destinations.values():
                grid = scaled_grid(self.reference, destination.scale)
                target = stack.enter_context(atomic_file(destination.path))
                complete[destination.path] = written = target
                if cog:  # streamed into a plain tiled GeoTIFF, then copied as a COG with overviews
                    written = target.with_name(target.name + ".stream.tif")
                    stack.callback(written.unlink, missing_ok=True)
                    conversions.append((written, target))
                profile = geotiff_profile(
                    width=grid.width,
                    height=grid.height,
                    count=len(destination.descriptions),
                    dtype=destination.dtype,
                    crs=grid.crs,
                    transform=grid.transform,
                    nodata=destination.nodata,
                    fast_compression=True,  # see FAST_COMPRESSION
                    band_interleaved=True,  # smaller files, less CPU time (see geotiff_profile)
                )
                spec = destination.spec
                tags = dict(spec.tags or {}) if spec else None
                dataset = create_geotiff(written, profile, destination.descriptions, tags)
                stack.callback(dataset.close)
                if spec is not None:
                    _describe_values(dataset, spec)
                datasets[destination.path] = (dataset, destination.scale)
            self._stream(chunks, datasets)
            self._check_valid_pixels()
            for dataset, _ in datasets.values():
                close_and_verify(dataset)
            for written, target in conversions:
                try:
                    rasterio.shutil.copy(
                        written, target, driver="COG", compress="deflate", blocksize=BLOCK_SIZE, overviews="auto"
                    )
                except RasterioError as error:
                    raise write_failure(target, error) from error
                verify_geotiff(target)
            if before_publish is not None:
                before_publish(complete)
        log.info("wrote %s", ", ".join(str(output.path) for output in self.outputs))
        return [output.path for output in self.outputs]

    def _check_valid_pixels(self) -> None:
        """Fail (nothing is published) when an output has no valid pixel; say how many there are, and warn
        when they are few."""
        for output in self.outputs:
            grid = scaled_grid(self.reference, output.scale)
            count, total = self.valid_pixels[output.name], grid.width * grid.height
            if count == 0:
                raise EmptyResultError(
                    f"{output.path} would hold no valid pixel: no pixel of the {grid.height}x{grid.width} image has "
                    f"all the inputs the model needs (no data, or no clear acquisition, in a required input)"
                )
            share = count / total
            if share < FEW_VALID_SHARE:
                log.warning(
                    "%s: only %d valid pixels of %d (%.2f %%): the rest lacks a required input",
                    output.path, count, total, 100 * share,
                )  # fmt: skip
            else:
                log.info("%s: %d valid pixels of %d (%.1f %%)", output.path, count, total, 100 * share)

    def _stream(self, chunks: Sequence[Chunk], datasets: dict) -> None:
        """Read ahead (a thread), run the model (this thread), convert and write (a thread) every chunk. Whatever
        happens (a model or writer error, Ctrl-C), both I/O threads have stopped when this returns or raises: the
        caller then closes the sources' and the outputs' datasets, which a thread still reading or writing them would
        crash on."""
        stopping = threading.Event()  # a write failed, or the run stops: the writes not done are dropped

        def write(read: _ChunkInputs, results: dict[str, np.ndarray] | None) -> None:
            if stopping.is_set():
                return
            try:
                _write(self.to_write(read, results), datasets)
            except BaseException:
                stopping.set()
                raise

        with (
            IOThreads("decloud-reader", initializer=_yield_to_the_model) as reader,
            IOThreads("decloud-writer", initializer=_yield_to_the_model) as writer,
        ):
            writes = deque()
            try:
                for read in progress(
                    self._read_ahead(chunks, reader), desc="inference", total=len(chunks), unit="chunk"
                ):
                    writes.append(writer.submit(write, read, self.run_model(read)))
                    if len(writes) > CHUNKS_IN_FLIGHT:
                        writes.popleft().result()  # a write error stops the run here
                while writes:
                    writes.popleft().result()
            except BaseException:
                stopping.set()
                raise


def _yield_to_the_model() -> None:
    """Lower the calling I/O thread's scheduling priority (Linux threads have their own): the model's
    threads then keep the cores and the I/O work fills the gaps between its operations, instead of
    preempting one of its threads and making the others wait for it."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), IO_THREAD_NICENESS)


def _describe_values(dataset: DatasetWriter, spec: OutputSpec) -> None:
    """Write an output's band scales and offsets and its colour table."""
    if spec.band_scales is not None:
        dataset.scales = tuple(spec.band_scales)
    if spec.band_offsets is not None:
        dataset.offsets = tuple(spec.band_offsets)
    if spec.colormap is not None:
        dataset.write_colormap(1, dict(spec.colormap))


def _write(result: _ChunkResult, datasets: dict) -> None:
    """Write a chunk's arrays, each clipped to its GeoTIFF."""
    chunk = result.chunk
    for path, array in result.arrays.items():
        dataset, scale = datasets[path]
        row, col = int(chunk.row / scale), int(chunk.col / scale)
        rows, cols = min(array.shape[0], dataset.height - row), min(array.shape[1], dataset.width - col)
        write_window(dataset, np.moveaxis(array[:rows, :cols], -1, 0), window=Window(col, row, cols, rows))
