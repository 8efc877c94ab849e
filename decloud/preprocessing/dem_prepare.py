"""Prepare the DEM of a tile: mosaic one or more DEM rasters and resample them bilinearly onto the
20 m grid of the tile (the grid of a prepared ``_FRE_20m.tif``), as int16 metres.

    python -m decloud.preprocessing.dem_prepare --reference <..._FRE_20m.tif> --input <DEM> [<DEM> ...] --output <T.tif>

The inputs may be in any CRS. Where several inputs cover a pixel, the first one (in the order given)
that has a value there wins, so list the preferred DEM first and the fallbacks after it. Pixels that no
input covers stay no-data (:data:`~decloud.core.constants.DEM_NODATA`).

Heights are kept as they are in the inputs: there is no vertical datum conversion (an EGM96 DEM gives
EGM96 heights). A compound CRS (horizontal + vertical, such as EPSG:9707 "WGS 84 + EGM96 height") is
reduced to its horizontal part before warping, so GDAL only ever transforms planimetric coordinates
and never needs (or fails to find) a geoid grid.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.io import DatasetReader
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from decloud.core.atomic import atomic_file, outputs_to_write
from decloud.core.cli import run_command
from decloud.core.constants import DEM_NODATA
from decloud.core.errors import CorruptRasterError, InvalidArgumentError
from decloud.core.paths import require_output_file
from decloud.core.progress import progress
from decloud.core.raster import (
    DEFAULT_WINDOW_SIZE,
    Grid,
    block_windows,
    gdal_environment,
    geotiff_profile,
    open_raster,
    write_window,
    written_geotiff,
)

log = logging.getLogger(__name__)

#: Band description of the prepared DEM.
DEM_DESCRIPTION = "elevation (m)"
#: Largest error, in input pixels, allowed to GDAL's approximation of the reprojection: the default
#: (0.125) can move a sample by 4 m on a 30 m DEM, i.e. metres of height on steep slopes; 0.01 costs no
#: measurable time.
WARP_TOLERANCE = 0.01
#: Range of the int16 metres written; DEM_NODATA (-32768) lies outside it so no height is taken for no-data.
_INT16_HEIGHTS = (-32767, 32767)


def prepare_dem(
    reference: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    window_size: int = DEFAULT_WINDOW_SIZE,
) -> Path:
    """Write at ``output`` the mosaic of the DEMs ``inputs`` resampled onto the grid of ``reference``;
    return ``output``. Every input is checked (readable, one band, georeferenced, overlapping the
    reference) before anything is written."""
    if not inputs:
        raise InvalidArgumentError("no input DEM given")
    output = require_output_file(output, "--output DEM")
    if not outputs_to_write([output], overwrite):
        log.info("%s is already prepared, skipped (use --overwrite to redo it)", output)
        return output
    with gdal_environment(), ExitStack() as stack:
        reference_dataset = stack.enter_context(open_raster(reference))
        grid = Grid.of(reference_dataset)
        if grid.crs is None:
            raise InvalidArgumentError(f"reference {reference_dataset.name} has no CRS")
        sources = [_warped_input(stack, path, grid) for path in inputs]
        tags = {
            "SOURCE_DEMS": " ".join(Path(path).name for path in inputs),
            "REFERENCE_GRID": Path(reference_dataset.name).name,
            "VERTICAL_DATUM": "that of the source DEMs (not converted)",
        }
        profile = geotiff_profile(
            width=grid.width,
            height=grid.height,
            count=1,
            dtype="int16",
            crs=grid.crs,
            transform=grid.transform,
            nodata=DEM_NODATA,
        )
        windows = list(block_windows(grid.height, grid.width, window_size))
        with atomic_file(output) as temporary, written_geotiff(temporary, profile, [DEM_DESCRIPTION], tags) as dem:
            for window in progress(windows, desc=f"DEM {output.name}"):
                write_window(dem, _mosaic_to_the_edges(sources, window, grid), 1, window=window)
    log.info("prepared %s", output)
    return output


def horizontal_crs(crs: CRS) -> CRS:
    """The horizontal part of a compound CRS (``crs`` itself otherwise), so that warping never
    involves a vertical transformation."""
    definition = crs.to_dict(projjson=True)
    if definition.get("type") == "CompoundCRS":
        return CRS.from_dict(definition["components"][0])
    return crs


def _warped_input(stack: ExitStack, path: str | os.PathLike[str], grid: Grid) -> WarpedVRT:
    """Open the DEM at ``path`` as a virtual raster on ``grid`` (bilinear, float32 so that rounding to
    metres happens once, at the end)."""
    dataset = stack.enter_context(open_raster(path))
    if dataset.count != 1:
        raise InvalidArgumentError(f"DEM {dataset.name} has {dataset.count} bands instead of 1")
    if dataset.crs is None:
        raise InvalidArgumentError(f"DEM {dataset.name} has no CRS")
    source_crs = horizontal_crs(dataset.crs)
    _require_overlap(dataset, source_crs, grid)
    try:
        return stack.enter_context(
            WarpedVRT(
                dataset,
                src_crs=source_crs,
                src_nodata=dataset.nodata,
                crs=horizontal_crs(grid.crs),
                transform=grid.transform,
                width=grid.width,
                height=grid.height,
                nodata=DEM_NODATA,
                resampling=Resampling.bilinear,
                tolerance=WARP_TOLERANCE,
                dtype="float32",
            )
        )
    except (RasterioError, CRSError) as error:
        raise CorruptRasterError(dataset.name, f"cannot warp it onto the reference grid: {error}") from error


def _require_overlap(dataset: DatasetReader, source_crs: CRS, grid: Grid) -> None:
    """Fail early, naming the DEM, when its extent does not meet the reference's at all (a DEM of
    the wrong area would otherwise silently give an all no-data output)."""
    try:
        west, south, east, north = transform_bounds(
            horizontal_crs(grid.crs),
            source_crs,
            *array_bounds(grid.height, grid.width, grid.transform),
            densify_pts=21,
        )
    except (RasterioError, CRSError) as error:
        raise InvalidArgumentError(
            f"cannot express the extent of the reference in the CRS of DEM {dataset.name}: {error}"
        ) from error
    bounds = dataset.bounds
    in_left, in_right = sorted((bounds.left, bounds.right))
    in_bottom, in_top = sorted((bounds.bottom, bounds.top))
    # transform_bounds gives west > east when the reference straddles the antimeridian of a geographic CRS.
    x_ranges = [(west, east)] if west <= east else [(west, math.inf), (-math.inf, east)]
    overlaps = all(map(math.isfinite, (south, north))) and (
        south < in_top and in_bottom < north and any(start < in_right and in_left < end for start, end in x_ranges)
    )
    if not overlaps:
        raise InvalidArgumentError(
            f"DEM {dataset.name} does not overlap the reference grid "
            f"(DEM extent {in_left:g}, {in_bottom:g}, {in_right:g}, {in_top:g}; "
            f"reference extent in the DEM's CRS {west:g}, {south:g}, {east:g}, {north:g})"
        )


def _mosaic(sources: Sequence[WarpedVRT], window: Window) -> np.ndarray:
    """int16 metres over ``window``: each pixel from the first source with a value there."""
    mosaic = np.full((window.height, window.width), np.nan, dtype=np.float32)
    for source in sources:
        missing = np.isnan(mosaic)
        if not missing.any():
            break
        values = _read_warped(source, window)
        usable = missing & np.isfinite(values) & (values != DEM_NODATA)
        mosaic[usable] = values[usable]
    heights = np.clip(np.rint(mosaic), *_INT16_HEIGHTS)
    return np.where(np.isnan(mosaic), DEM_NODATA, heights).astype(np.int16)


def _mosaic_to_the_edges(sources: Sequence[WarpedVRT], window: Window, grid: Grid) -> np.ndarray:
    """:func:`_mosaic` over ``window``, where the outer rows and columns of ``grid`` that the inputs miss
    take the value of their inward neighbour.

    The 20 m grid of a 10 m grid of odd size reaches half a 20 m pixel past the 10 m extent (and a reference
    may reach past a DEM by less than a pixel): the centres of its outer pixels then lie on or beyond the
    DEM's edge, where bilinear warping gives no value although the DEM covers most of those pixels.
    Filling only the outer ring from a neighbour that has a value leaves a DEM that really ends short of
    the grid no-data there.
    """
    row0, col0 = max(window.row_off - 1, 0), max(window.col_off - 1, 0)
    row1 = min(window.row_off + window.height + 1, grid.height)
    col1 = min(window.col_off + window.width + 1, grid.width)
    heights = _mosaic(sources, Window(col0, row0, col1 - col0, row1 - row0))
    rows, cols = heights.shape
    for outer, inward, on_edge in ((0, 1, row0 == 0), (rows - 1, rows - 2, row1 == grid.height)):
        if on_edge and rows > 1:
            missing = heights[outer] == DEM_NODATA
            heights[outer, missing] = heights[inward, missing]
    for outer, inward, on_edge in ((0, 1, col0 == 0), (cols - 1, cols - 2, col1 == grid.width)):
        if on_edge and cols > 1:
            missing = heights[:, outer] == DEM_NODATA
            heights[missing, outer] = heights[missing, inward]
    top, left = window.row_off - row0, window.col_off - col0
    return heights[top : top + window.height, left : left + window.width]


def _read_warped(source: WarpedVRT, window: Window) -> np.ndarray:
    """Read ``window`` of a warped DEM; a failure (truncated or corrupt file) names the DEM file and
    gives GDAL's own reason, which rasterio keeps as the cause."""
    try:
        return source.read(1, window=window)
    except RasterioError as error:
        raise CorruptRasterError(source.src_dataset.name, str(error.__cause__ or error)) from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud dem-prepare",
        description="Mosaic DEM rasters (any CRS) and resample them bilinearly onto the 20 m grid of a tile, "
        "as int16 metres. Heights are not converted between vertical datums.",
    )
    parser.add_argument(
        "--reference", required=True, help="raster on the target grid, normally a prepared <PRODUCT>_FRE_20m.tif"
    )
    parser.add_argument(
        "--input",
        required=True,
        nargs="+",
        action="extend",
        help="DEM raster(s); where they overlap, the first one listed that has a value wins",
    )
    parser.add_argument("--output", required=True, help="output GeoTIFF, e.g. DEM_PREPARE/T31TEJ.tif")
    parser.add_argument("--overwrite", action="store_true", help="replace a DEM already prepared by decloud")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(
        build_parser(),
        lambda args: prepare_dem(args.reference, args.input, args.output, overwrite=args.overwrite),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
