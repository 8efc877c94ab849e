"""Prepare one Sentinel-2 L2A product (THEIA or ESA SAFE, folder or .zip) for decloud.

Writes ``<out>/<TILE>/<PRODUCT>/`` with the 10 m stack (B2, B3, B4, B8), the 20 m stack (B5, B6, B7,
B8A, B11, B12) on the 20 m grid of the 10 m grid (:mod:`decloud.core.grid_20m`: bands whose origin is off
it are resampled bilinearly onto it, and the completion marker says so), the cloud and no-data masks on
the 10 m grid, and the per-patch statistics at 640 m (cloud percentage, number of no-data pixels), then a
completion marker. Everything is streamed by
windows and the folder appears only when complete; a rerun skips a complete product unless
``overwrite`` is set.

    python -m decloud.preprocessing.sentinel2_prepare --in_image <product folder or .zip> --out_s2_dir <dir>
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from decloud.core.atomic import atomic_directory, outputs_to_write
from decloud.core.cli import run_command
from decloud.core.constants import (
    S2_BANDS_10M,
    S2_BANDS_20M,
    S2_NODATA,
    S2_REFLECTANCE_SCALE,
    S2_SUFFIX_CLM,
    S2_SUFFIX_CLOUD_STATS,
    S2_SUFFIX_EDG,
    S2_SUFFIX_FRE_10M,
    S2_SUFFIX_FRE_20M,
    S2_SUFFIX_NODATA_STATS,
)
from decloud.core.patches import (
    count_per_patch,
    patch_grid_shape,
    patch_grid_transform,
    patch_window,
    percent_per_patch,
)
from decloud.core.paths import require_output_folder
from decloud.core.progress import progress
from decloud.core.raster import (
    DEFAULT_WINDOW_SIZE,
    Grid,
    block_windows,
    gdal_environment,
    geotiff_profile,
    write_array,
    write_window,
    written_geotiff,
)
from decloud.preprocessing.outputs import tile_directory, write_completion_marker
from decloud.preprocessing.s2_sources import S2Source, open_s2_source

log = logging.getLogger(__name__)


def prepare_s2_product(
    in_image: str | os.PathLike[str],
    out_s2_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    window_size: int = DEFAULT_WINDOW_SIZE,
) -> Path:
    """Prepare the product at ``in_image`` under ``out_s2_dir``; return the prepared product folder."""
    require_output_folder(out_s2_dir, "--out_s2_dir folder")
    with gdal_environment(), open_s2_source(in_image) as source:
        product_dir = tile_directory(out_s2_dir, source.name.tile) / source.name.name
        if not outputs_to_write([product_dir], overwrite):
            log.info("%s is already prepared, skipped (use --overwrite to redo it)", product_dir)
            return product_dir
        with atomic_directory(product_dir) as work_dir:
            _write_prepared_product(source, work_dir, window_size)
            write_completion_marker(
                work_dir,
                in_image,
                product=source.name.name,
                product_type=source.name.kind,
                bands_10m=list(S2_BANDS_10M),
                bands_20m=list(S2_BANDS_20M),
                source_grid_20m=source.source_grid_20m.describe(),
                resampled_20m=not source.source_grid_20m.same_as(source.grid_20m),
            )
    log.info("prepared %s", product_dir)
    return product_dir


def _write_prepared_product(source: S2Source, out_dir: Path, window_size: int) -> None:
    name = source.name.name
    tags = {
        "PRODUCT": name,
        "TILE": source.name.tile,
        "ACQUISITION_DATETIME": source.name.acquired.isoformat(),
        "REFLECTANCE_SCALE": S2_REFLECTANCE_SCALE,
    }
    grid_10m, grid_20m = source.grid_10m, source.grid_20m
    stats_shape = patch_grid_shape(grid_10m.height, grid_10m.width)
    cloud_percent = np.zeros(stats_shape, dtype=np.float32)
    nodata_count = np.zeros(stats_shape, dtype=np.uint16)

    with ExitStack() as outputs:
        fre_10m = outputs.enter_context(
            written_geotiff(
                out_dir / f"{name}{S2_SUFFIX_FRE_10M}", _profile(grid_10m, 4, "int16", S2_NODATA), S2_BANDS_10M, tags
            )
        )
        clm = outputs.enter_context(
            written_geotiff(
                out_dir / f"{name}{S2_SUFFIX_CLM}",
                _profile(grid_10m, 1, "uint8"),
                ["cloud mask (non-zero: cloud)"],
                tags,
            )
        )
        edg = outputs.enter_context(
            written_geotiff(
                out_dir / f"{name}{S2_SUFFIX_EDG}",
                _profile(grid_10m, 1, "uint8"),
                ["no-data mask (non-zero: no data)"],
                tags,
            )
        )
        windows = list(block_windows(grid_10m.height, grid_10m.width, window_size))
        for window in progress(windows, desc=f"{name} 10 m"):
            write_window(fre_10m, source.read_10m(window), window=window)
            cloud, nodata = source.read_masks(window)
            write_window(clm, cloud, 1, window=window)
            write_window(edg, nodata, 1, window=window)
            stats_slices = patch_window(window).toslices()
            cloud_percent[stats_slices] = percent_per_patch(cloud != 0)
            nodata_count[stats_slices] = count_per_patch(nodata != 0, outside=True)

        fre_20m = outputs.enter_context(
            written_geotiff(
                out_dir / f"{name}{S2_SUFFIX_FRE_20M}", _profile(grid_20m, 6, "int16", S2_NODATA), S2_BANDS_20M, tags
            )
        )
        windows = list(block_windows(grid_20m.height, grid_20m.width, window_size))
        for window in progress(windows, desc=f"{name} 20 m"):
            write_window(fre_20m, source.read_20m(window), window=window)

    stats_transform = patch_grid_transform(grid_10m.transform)
    write_array(
        out_dir / f"{name}{S2_SUFFIX_CLOUD_STATS}",
        cloud_percent,
        crs=grid_10m.crs,
        transform=stats_transform,
        descriptions=["cloud percentage per 64x64 patch"],
        tags=tags,
    )
    write_array(
        out_dir / f"{name}{S2_SUFFIX_NODATA_STATS}",
        nodata_count,
        crs=grid_10m.crs,
        transform=stats_transform,
        descriptions=["no-data pixels per 64x64 patch (0: valid)"],
        tags=tags,
    )


def _profile(grid: Grid, count: int, dtype: str, nodata: float | None = None) -> dict:
    return geotiff_profile(
        width=grid.width,
        height=grid.height,
        count=count,
        dtype=dtype,
        crs=grid.crs,
        transform=grid.transform,
        nodata=nodata,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud s2-prepare",
        description="Prepare a Sentinel-2 L2A product (THEIA or ESA SAFE, folder or .zip): 10 m and 20 m "
        "stacks, cloud and no-data masks, per-patch statistics.",
    )
    parser.add_argument("--in_image", required=True, help="THEIA or SAFE product, folder or .zip")
    parser.add_argument(
        "--out_s2_dir",
        required=True,
        help="output root; the product goes to <out_s2_dir>/<TILE>/<PRODUCT> (or <out_s2_dir>/<PRODUCT> "
        "when out_s2_dir is already named after the tile)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a product already prepared by decloud")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(
        build_parser(), lambda args: prepare_s2_product(args.in_image, args.out_s2_dir, overwrite=args.overwrite), argv
    )


if __name__ == "__main__":
    sys.exit(main())
