"""Prepare one Sentinel-1 acquisition (an S1Tiling vv/vh pair of linear sigma0 GeoTIFFs) for decloud.

Writes ``<out>/<TILE>/s1x_<tile>_vvvh_<ASC|DES>_<orbit>_<date-time>_from-10to3dB.tif``, a uint16 [VV, VH]
stack of encoded sigma0 (see :mod:`decloud.preprocessing.normalization`; 0 is no data), and beside it the
per-patch validity statistics: the number of no-data pixels of each 64x64 elementary patch (0: valid).
Everything is streamed by windows, both files appear only when complete, and a rerun skips an image
already prepared unless ``overwrite`` is set.

    python -m decloud.preprocessing.sentinel1_prepare --input_s1_vh <..._vh_....tif> --out_s1_dir <dir>
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from decloud.core.atomic import atomic_outputs, outputs_to_write
from decloud.core.cli import run_command
from decloud.core.constants import S1_BANDS, S1_NODATA
from decloud.core.errors import InputNotFoundError, ProductFormatError
from decloud.core.naming import S1ProductName, parse_s1_name
from decloud.core.patches import count_per_patch, patch_grid_shape, patch_grid_transform, patch_window
from decloud.core.paths import require_output_folder
from decloud.core.products import s1_nodata_stats_path
from decloud.core.progress import progress
from decloud.core.raster import (
    DEFAULT_WINDOW_SIZE,
    Grid,
    block_windows,
    gdal_environment,
    geotiff_profile,
    open_raster,
    read_window,
    require_same_grid,
    write_array,
    write_window,
    written_geotiff,
)
from decloud.preprocessing.normalization import S1_ENCODING_NOTE, encode_s1
from decloud.preprocessing.outputs import tile_directory

log = logging.getLogger(__name__)


def prepare_s1_image(
    input_s1_vh: str | os.PathLike[str],
    out_s1_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    window_size: int = DEFAULT_WINDOW_SIZE,
) -> Path:
    """Prepare the acquisition of the S1Tiling ``vh`` file ``input_s1_vh`` (its ``vv`` twin must lie beside
    it) under ``out_s1_dir``; return the prepared image's path."""
    vh_path = Path(input_s1_vh)
    require_output_folder(out_s1_dir, "--out_s1_dir folder")
    if not vh_path.exists():
        raise InputNotFoundError(vh_path, "Sentinel-1 vh image")
    name = _parse_vh_name(vh_path)
    vv_path = matching_vv_path(vh_path)
    if not vv_path.exists():
        raise InputNotFoundError(vv_path, f"vv image matching {vh_path}")

    image_path = tile_directory(out_s1_dir, name.tile) / name.prepared_name()
    stats_path = s1_nodata_stats_path(image_path)
    if not outputs_to_write([image_path, stats_path], overwrite):
        log.info("%s is already prepared, skipped (use --overwrite to redo it)", image_path)
        return image_path

    with gdal_environment(), open_raster(vv_path) as vv, open_raster(vh_path) as vh:
        grid = require_same_grid([vh, vv])
        for dataset in (vv, vh):
            _require_single_band(dataset)
        windows = list(block_windows(grid.height, grid.width, window_size))
        tags = _tags(name, vv_path, vh_path)
        # The image is published first, the statistics last: readers take an image only with its statistics.
        with atomic_outputs() as outputs:
            image_work, stats_work = outputs.file(image_path), outputs.file(stats_path)
            nodata_count = _write_encoded_stack(vv, vh, grid, windows, image_work, tags, desc=image_path.name)
            write_array(
                stats_work,
                nodata_count,
                crs=grid.crs,
                transform=patch_grid_transform(grid.transform),
                descriptions=["no-data pixels per 64x64 patch (0: valid)"],
                tags=tags,
            )
    log.info("prepared %s", image_path)
    return image_path


def _parse_vh_name(vh_path: Path) -> S1ProductName:
    name = parse_s1_name(str(vh_path))
    if name.polarisation != "vh":
        raise ProductFormatError(
            f"{vh_path} is a {name.polarisation} image: the input must be the vh file (its vv twin is found beside it)"
        )
    return name


def matching_vv_path(vh_path: Path) -> Path:
    """The vv file of the same acquisition: the same name with vv for vh (in the same case), same folder."""
    satellite, tile, polarisation, rest = vh_path.name.split("_", 3)
    vv = "VV" if polarisation.isupper() else "vv"
    return vh_path.with_name(f"{satellite}_{tile}_{vv}_{rest}")


def _require_single_band(dataset: DatasetReader) -> None:
    """S1Tiling writes one polarisation per file; a multi-band file is something else and would be misread."""
    if dataset.count != 1:
        raise ProductFormatError(f"{dataset.name} has {dataset.count} bands; an S1Tiling image has one")


def _tags(name: S1ProductName, vv_path: Path, vh_path: Path) -> dict[str, object]:
    return {
        "SATELLITE": name.satellite,
        "TILE": name.tile,
        "ORBIT_DIRECTION": name.orbit_direction,
        "RELATIVE_ORBIT": name.relative_orbit,
        "ACQUISITION_DATETIME": name.acquired.isoformat(),
        "ACQUISITION_TIME_KNOWN": name.time_known,
        "SOURCE_VV": vv_path.name,
        "SOURCE_VH": vh_path.name,
        "ENCODING": S1_ENCODING_NOTE,
    }


def _write_encoded_stack(
    vv: DatasetReader,
    vh: DatasetReader,
    grid: Grid,
    windows: list[Window],
    path: Path,
    tags: dict[str, object],
    desc: str,
) -> np.ndarray:
    """Write the encoded [VV, VH] stack window by window; return the per-patch no-data counts
    (a pixel is no data when either polarisation is)."""
    profile = geotiff_profile(
        width=grid.width,
        height=grid.height,
        count=len(S1_BANDS),
        dtype="uint16",
        crs=grid.crs,
        transform=grid.transform,
        nodata=S1_NODATA,
    )
    nodata_count = np.zeros(patch_grid_shape(grid.height, grid.width), dtype=np.uint16)
    with written_geotiff(path, profile, S1_BANDS, tags) as output:
        for window in progress(windows, desc=desc):
            encoded = encode_s1(np.stack([_read_sigma0(vv, window), _read_sigma0(vh, window)]))
            write_window(output, encoded, window=window)
            nodata_count[patch_window(window).toslices()] = count_per_patch(
                (encoded == S1_NODATA).any(axis=0), outside=True
            )
    return nodata_count


def _read_sigma0(dataset: DatasetReader, window: Window) -> np.ndarray:
    """Linear sigma0 of ``window``, 0 wherever the file says no data (its nodata tag or mask)."""
    return read_window(dataset, window, 1, masked=True).filled(S1_NODATA)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud s1-prepare",
        description="Prepare a Sentinel-1 acquisition from its S1Tiling vv and vh linear sigma0 GeoTIFFs: "
        "uint16 [VV, VH] stack of ln(sigma0) stretched over [-10, 3] (0: no data), per-patch validity statistics.",
    )
    parser.add_argument(
        "--input_s1_vh", required=True, help="S1Tiling vh file; the vv file of the same name must lie beside it"
    )
    parser.add_argument(
        "--out_s1_dir",
        required=True,
        help="output root; the image goes to <out_s1_dir>/<TILE>/ (or <out_s1_dir>/ when it is already named "
        "after the tile)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an image already prepared by decloud")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(
        build_parser(),
        lambda args: prepare_s1_image(args.input_s1_vh, args.out_s1_dir, overwrite=args.overwrite),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
