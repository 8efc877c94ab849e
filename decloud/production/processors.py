"""The Decloud processors: which inputs each family of models is fed, built from prepared products,
and the run of the streaming engine that reconstructs the target image.

- CRGA (``crga_os1_*``, ``crga_os2_*``): the S1/S2 pair before the target date (``tm1``) and, for OS2,
  after it (``tp1``), each selected per pixel; the S1 mosaic and the S2 image at the target date (``t``);
  the DEM when the model uses it.
- Meraner: the S1 mosaic and the S2 image at ``t``; the DEM when the model uses it.
- Monthly synthesis: six S2 images of a month (``d0``..``d5``), and for the S2+S1 models the S1 mosaic
  closest to each of them.

Outputs are int16 in prepared units (reflectance x 10000, no-data -10000) on the target's grid.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from affine import Affine

from decloud.acquisitions.transplant import CLOUDY_AS_ACQUIRED, CLOUDY_AS_NODATA, DESCRIPTION_KEY
from decloud.core import keys
from decloud.core.atomic import outputs_to_write, skip_message
from decloud.core.constants import DEM_NODATA, HOUR, S2_BANDS_10M, S2_BANDS_20M, S2_NODATA
from decloud.core.errors import InvalidArgumentError
from decloud.core.paths import require_output_file
from decloud.core.products import S1Image, S2Product
from decloud.core.raster import Grid, open_raster
from decloud.production.backends import ModelBackend, SavedModelBackend, load_backend
from decloud.production.input_selection import (
    ClearMaskSource,
    HoledS2Source,
    PairSelectionSource,
    S1MosaicSource,
)
from decloud.production.sources import InputSource, RasterSource
from decloud.production.streaming import COG_HELP, OutputSpec, StreamingEngine

log = logging.getLogger(__name__)

#: Auxiliary key of the target's clear-sky mask (for --keep_clear).
CLEAR_KEY = "clear"
#: Margin of a model whose receptive field is unknown (an ONNX model without its metadata), when the user
#: gives none.
DEFAULT_PAD = 64
#: Largest S1/S2 gap a pair may have, hours (a year): beyond it a "pair" says nothing of the same ground.
MAX_GAP_HOURS = 366 * 24.0
#: Largest side of a chunk read with its margins (--ts + 2 x --pad), 10 m pixels: one such 4-band float32
#: input already takes 1 GiB.
MAX_CHUNK_SIDE = 8192


@dataclass(frozen=True)
class InferenceOptions:
    """How to run a processor (the flags shared by every processor)."""

    chunk_size: int = 512
    pad: int | None = None  #: None: the model's receptive field (DEFAULT_PAD when unknown)
    max_gap_hours: float = 72.0
    with_20m_bands: bool = False
    keep_clear: bool = False
    write_intermediate: bool = False
    cog: bool = False
    overwrite: bool = False  #: replace outputs already written (else they are kept and the run skipped)
    #: How the model saw cloudy pixels in training (from its description): as acquired, or as no-data holes.
    cloudy_pixels: str = CLOUDY_AS_ACQUIRED
    #: Whether the model reads the days from the target date to its per-pixel chosen images (``s2_days_<a>``).
    with_days: bool = False

    def __post_init__(self) -> None:
        """Refuse the values that would crash, hang or exhaust memory later, naming the flag."""
        if not (math.isfinite(self.max_gap_hours) and 0 <= self.max_gap_hours <= MAX_GAP_HOURS):
            raise InvalidArgumentError(
                f"--maxgap {self.max_gap_hours:g}: the maximum S1/S2 gap must be a number of hours "
                f"between 0 and {MAX_GAP_HOURS:g}"
            )
        if self.chunk_size < 1:
            raise InvalidArgumentError(f"--ts {self.chunk_size}: the chunk size must be at least 1 pixel")
        if self.pad is not None and self.pad < 0:
            raise InvalidArgumentError(f"--pad {self.pad}: the margin cannot be negative")
        margin = self.pad or 0
        if self.chunk_size + 2 * margin > MAX_CHUNK_SIDE:
            raise InvalidArgumentError(
                f"--ts {self.chunk_size} with --pad {margin}: a chunk and its margins (ts + 2 x pad) must "
                f"be at most {MAX_CHUNK_SIDE} pixels wide"
            )


@dataclass
class LoadedModel:
    backend: ModelBackend
    path: Path
    size_multiple: int
    #: radius (10 m pixels) of the input area that influences an output pixel; None when unknown
    receptive_field: int | None
    cloudy_pixels: str = CLOUDY_AS_ACQUIRED

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LoadedModel:
        """The model and what its description (``decloud_model.json`` in a SavedModel, ``<name>.json``
        beside an ONNX file) says about tiling; the receptive field of a SavedModel exported without it
        is measured now."""
        # Imported here: they import TensorFlow, which a --help or a bad-argument error need not wait for.
        from decloud.models.export import DESCRIPTION_FILE, read_description
        from decloud.models.onnx_conversion import metadata_path

        path = Path(path)
        backend = load_backend(path)
        description_file = metadata_path(path) if path.suffix.lower() == ".onnx" else path / DESCRIPTION_FILE
        description = read_description(description_file)
        cloudy_pixels = description.get(DESCRIPTION_KEY, CLOUDY_AS_ACQUIRED)
        if cloudy_pixels not in (CLOUDY_AS_ACQUIRED, CLOUDY_AS_NODATA):
            raise InvalidArgumentError(f"{description_file}: unknown {DESCRIPTION_KEY!r} value {cloudy_pixels!r}")
        radius = description.get("receptive_field", {}).get("radius_10m_pixels")
        if radius is None and isinstance(backend, SavedModelBackend) and "s2_estim" in backend.outputs:
            multiple = backend.serving.size_multiple()
            radius = backend.serving.receptive_field(multiple)[0]
            log.info("%s: receptive field measured, %d pixels (the description has none)", path, radius)
            return cls(backend, path, multiple, radius, cloudy_pixels)
        return cls(backend, path, int(description.get("size_multiple", 1)), radius, cloudy_pixels)

    def options_for(self, options: InferenceOptions) -> InferenceOptions:
        """``options`` with the model's way of seeing cloudy pixels and whether it reads the days of its images,
        so that inference agrees with training."""
        with_days = bool(keys.keys_of_source(self.backend.inputs, keys.S2_DAYS))
        return replace(options, cloudy_pixels=self.cloudy_pixels, with_days=with_days)

    def margin(self, requested: int | None) -> int:
        """The margin (``--pad``) of a run: ``requested``, by default the receptive field, rounded up to the
        size multiple; a margin narrower than the receptive field is warned about (chunk borders then show)."""
        if requested is None:
            if self.receptive_field is None:
                log.warning("%s has no receptive field in its description: margin %d pixels", self.path, DEFAULT_PAD)
            requested = DEFAULT_PAD if self.receptive_field is None else self.receptive_field
        elif self.receptive_field is not None and requested < self.receptive_field:
            log.warning(
                "--pad %d is narrower than the receptive field of %s (%d pixels): pixels near chunk borders will "
                "depend on the chunk size",
                requested, self.path, self.receptive_field,
            )  # fmt: skip
        return -(-requested // self.size_multiple) * self.size_multiple

    def uses(self, key: str) -> bool:
        """Whether the model reads input ``key`` (the time-series processors feed what it reads)."""
        return key in self.backend.inputs


def reference_grid(product: S2Product, subset: tuple[float, float, float, float] | None = None) -> Grid:
    """The 10 m grid of ``product``, or its part covering ``subset`` = (ulx, uly, lrx, lry) in the product's
    CRS (snapped outwards to even pixels, so that the 20 m grid stays aligned)."""
    with open_raster(product.bands_10m) as dataset:
        grid = Grid.of(dataset)
    if subset is None:
        return grid
    ulx, uly, lrx, lry = subset
    col0, row0 = ~grid.transform @ (ulx, uly)
    col1, row1 = ~grid.transform @ (lrx, lry)
    col0, row0 = max(0, math.floor(col0 / 2) * 2), max(0, math.floor(row0 / 2) * 2)
    col1, row1 = min(grid.width, math.ceil(col1)), min(grid.height, math.ceil(row1))
    if col1 <= col0 or row1 <= row0:
        raise InvalidArgumentError(f"the area {subset} does not overlap {product.bands_10m} ({grid.describe()})")
    return Grid(grid.crs, grid.transform @ Affine.translation(col0, row0), col1 - col0, row1 - row0)


def target_sources(
    stack: ExitStack, target: S2Product, reference: Grid, options: InferenceOptions
) -> list[InputSource]:
    """The S2 image at ``t`` (10 m, and 20 m when asked; its cloudy pixels set to no-data for a model trained
    on transplanted masks), and the clear-sky mask for --keep_clear."""
    if options.cloudy_pixels == CLOUDY_AS_NODATA:
        holed = HoledS2Source("t", target, reference, with_20m_bands=options.with_20m_bands)
        sources: list[InputSource] = [stack.enter_context(holed)]
    else:
        sources = s2_image_sources(stack, "t", target, reference, options.with_20m_bands)
    if options.keep_clear:
        sources.append(stack.enter_context(ClearMaskSource(CLEAR_KEY, target, reference)))
    return sources


def s2_image_sources(
    stack: ExitStack, acquisition: str, product: S2Product, reference: Grid, with_20m_bands: bool
) -> list[InputSource]:
    """``s2_<acquisition>`` (and ``s2_20m_<acquisition>``) read as they are from a prepared product."""
    key = keys.key(keys.S2, acquisition)
    sources: list[InputSource] = [
        stack.enter_context(RasterSource(key, product.bands_10m, reference, nodata=S2_NODATA))
    ]
    if with_20m_bands:
        key = keys.key(keys.S2_20M, acquisition)
        source = RasterSource(key, product.bands_20m, reference, scale=2, nodata=S2_NODATA)
        sources.append(stack.enter_context(source))
    return sources


def dem_source(stack: ExitStack, dem: Path | None, reference: Grid) -> list[InputSource]:
    """The DEM, when one is given (the engine checks that the model reads it, and that it is given when
    the model reads it)."""
    if dem is None:
        return []
    return [stack.enter_context(RasterSource(keys.DEM, dem, reference, scale=2, nodata=DEM_NODATA))]


def crga_sources(
    stack: ExitStack,
    target: S2Product,
    before: tuple[Sequence[S2Product], Sequence[S1Image] | None],
    s1_at_target: Sequence[S1Image] | None,
    after: tuple[Sequence[S2Product], Sequence[S1Image] | None] | None,
    dem: Path | None,
    reference: Grid,
    options: InferenceOptions,
) -> list[InputSource]:
    """The CRGA inputs; S1 lists of None give the S2-only inputs (models with ``with_s1=False``)."""
    sources = target_sources(stack, target, reference, options)
    pairs = [("tm1", before)] + ([("tp1", after)] if after is not None else [])
    for acquisition, (s2_candidates, s1_candidates) in pairs:
        source = PairSelectionSource(
            acquisition,
            s2_candidates,
            s1_candidates,
            target.acquired,
            options.max_gap_hours,
            reference,
            with_20m_bands=options.with_20m_bands,
            with_days=options.with_days,
        )
        sources.append(stack.enter_context(source))
    if s1_at_target is not None:
        sources.append(stack.enter_context(S1MosaicSource("t", s1_at_target, target.acquired, reference)))
    return sources + dem_source(stack, dem, reference)


def meraner_sources(
    stack: ExitStack,
    target: S2Product,
    s1_at_target: Sequence[S1Image],
    dem: Path | None,
    reference: Grid,
    options: InferenceOptions,
) -> list[InputSource]:
    sources = target_sources(stack, target, reference, options)
    sources.append(stack.enter_context(S1MosaicSource("t", s1_at_target, target.acquired, reference)))
    return sources + dem_source(stack, dem, reference)


def reconstruct(
    model: LoadedModel,
    sources: Sequence[InputSource],
    reference: Grid,
    output: Path,
    output_20m: Path | None,
    options: InferenceOptions,
    *,
    keep_acquisition: str | None = "t",
    any_of: Sequence[str] = (),
    required: Sequence[str] | None = None,
) -> list[Path]:
    """Run the model over the reference grid and write its 10 m (and 20 m) estimate."""
    if output_20m is not None and not options.with_20m_bands:
        raise InvalidArgumentError("--output_20m needs --with_20m_bands (the 20 m bands are then fed to the model)")

    def spec(name: str, path: Path, bands: Sequence[str], source: str, scale: int) -> OutputSpec:
        keep = options.keep_clear and keep_acquisition is not None
        kept = keys.key(source, keep_acquisition) if keep else None
        return OutputSpec(name, path, bands, scale, keep_input=kept, clear_key=CLEAR_KEY if keep else None)

    outputs = [spec("s2_estim", output, S2_BANDS_10M, keys.S2, 1)]
    if output_20m is not None:
        outputs.append(spec("s2_20m_estim", output_20m, S2_BANDS_20M, keys.S2_20M, 2))
    fed = [key for source in sources for key in source.keys if key not in source.auxiliary]
    intermediate = (
        {key: output.with_name(f"{output.stem}_input_{key}.tif") for key in fed} if options.write_intermediate else None
    )
    if options.pad is not None and options.pad > max(reference.width, reference.height):
        raise InvalidArgumentError(
            f"--pad {options.pad}: the margin is larger than the image ({reference.width} x {reference.height} "
            "pixels), which it would only mirror"
        )
    written = [output, *([output_20m] if output_20m else []), *(intermediate or {}).values()]
    if not outputs_to_write(written, options.overwrite):
        log.info(skip_message(written))
        return written
    pad = model.margin(options.pad)
    engine = StreamingEngine(
        model.backend,
        sources,
        reference,
        outputs,
        chunk_size=-(-options.chunk_size // model.size_multiple) * model.size_multiple,
        pad=pad,
        size_multiple=model.size_multiple,
        model_name=str(model.path),
        intermediate=intermediate,
        any_of=any_of,
        required=required,
    )
    return engine.run(cog=options.cog)


def s1_near(images: Sequence[S1Image], date: datetime, max_gap_hours: float) -> list[S1Image]:
    """The images within ``max_gap_hours`` of ``date``."""
    return [image for image in images if abs((image.acquired - date).total_seconds()) <= max_gap_hours * HOUR]


def month_products(products: Sequence[S2Product], year: int, month: int, count: int = 6) -> list[S2Product]:
    """``count`` products of the month, spread over it as evenly as the dates allow."""
    in_month = sorted(
        (p for p in products if (p.acquired.year, p.acquired.month) == (year, month)), key=lambda p: p.acquired
    )
    if len(in_month) < count:
        raise InvalidArgumentError(
            f"{len(in_month)} Sentinel-2 products in {year}-{month:02d} among those given; the model needs {count}"
        )
    picks = np.linspace(0, len(in_month) - 1, count).round().astype(int)
    return [in_month[i] for i in picks]


def monthly_sources(
    stack: ExitStack,
    products: Sequence[S2Product],
    s1_images: Sequence[S1Image] | None,
    dem: Path | None,
    reference: Grid,
    options: InferenceOptions,
) -> list[InputSource]:
    sources: list[InputSource] = []
    for index, product in enumerate(products):
        name = f"d{index}"
        sources.append(
            stack.enter_context(RasterSource(keys.key(keys.S2, name), product.bands_10m, reference, nodata=S2_NODATA))
        )
        if options.with_20m_bands:
            key = keys.key(keys.S2_20M, name)
            sources.append(
                stack.enter_context(RasterSource(key, product.bands_20m, reference, scale=2, nodata=S2_NODATA))
            )
        if s1_images is not None:
            near = s1_near(s1_images, product.acquired, options.max_gap_hours)
            if not near:
                raise InvalidArgumentError(f"no Sentinel-1 image within {options.max_gap_hours:g} h of {product.name}")
            sources.append(stack.enter_context(S1MosaicSource(name, near, product.acquired, reference)))
    return sources + dem_source(stack, dem, reference)


def add_model_flags(parser: argparse.ArgumentParser, product: str = "reconstructed") -> None:
    """The DEM, model and output flags of the single-image processors."""
    parser.add_argument("--dem", type=Path, help="prepared DEM of the tile (models trained with the DEM)")
    parser.add_argument("--savedmodel", required=True, help="SavedModel folder or .onnx file")
    parser.add_argument("--output", type=Path, required=True, help=f"{product} 10 m bands (GeoTIFF, int16 x10000)")
    parser.add_argument("--output_20m", type=Path, help=f"{product} 20 m bands (needs --with_20m_bands)")


def output_paths(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The --output and --output_20m of :func:`add_model_flags`, checked before any work."""
    output_20m = args.output_20m and require_output_file(args.output_20m, "--output_20m image")
    return require_output_file(args.output, "--output image"), output_20m


def add_inference_flags(parser: argparse.ArgumentParser, *, keep_clear: bool = True) -> None:
    """The flags every processor shares."""
    parser.add_argument(
        "--ts",
        type=int,
        default=512,
        help="side of the chunks the model runs on at once (the image is processed chunk by chunk), 10 m pixels (512)",
    )
    parser.add_argument(
        "--pad",
        type=int,
        help="margin read around each chunk, 10 m pixels (default: the model's receptive field, or 64 when unknown)",
    )
    parser.add_argument("--maxgap", type=float, default=72.0, help="maximum S1/S2 gap of a pair, hours (72)")
    parser.add_argument("--with_20m_bands", action="store_true", help="feed the 20 m bands (models trained with them)")
    if keep_clear:
        parser.add_argument(
            "--keep_clear",
            action="store_true",
            help="keep the clear pixels of the target (CLM) and replace only the others",
        )
    parser.add_argument(
        "--write_intermediate",
        action="store_true",
        help="also write the inputs fed to the model (<output>_input_<key>.tif)",
    )
    parser.add_argument("--cog", action="store_true", help=COG_HELP)
    parser.add_argument("--overwrite", action="store_true", help="replace outputs already written by decloud")


def inference_options(args: argparse.Namespace) -> InferenceOptions:
    return InferenceOptions(
        chunk_size=args.ts,
        pad=args.pad,
        max_gap_hours=args.maxgap,
        with_20m_bands=args.with_20m_bands,
        keep_clear=getattr(args, "keep_clear", False),
        write_intermediate=args.write_intermediate,
        cog=args.cog,
        overwrite=args.overwrite,
    )
