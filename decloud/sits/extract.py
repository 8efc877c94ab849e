"""``decloud sits-extract``: the per-pixel time series of a tile's prepared Sentinel-2 products into a chunked
store, window by window; optionally the ``.npy`` layout of a small area, or a store from that layout.

    decloud sits-extract --s2_dir S2_PREPARE/T31TEJ --out T31TEJ.zarr [--window ROW COL HEIGHT WIDTH]
    decloud sits-extract --from_npy processed/T31TEJ --tile T31TEJ --out T31TEJ.zarr
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rasterio.windows import Window

from decloud.core.cli import run_command
from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M, S2_NODATA
from decloud.core.errors import InputNotFoundError, InvalidArgumentError
from decloud.core.products import prepared_s2_series
from decloud.sits.observations import PreparedS2Series
from decloud.sits.store import SeriesStore, export_npy, extract_series, import_npy


def window_of(values: Sequence[int] | None) -> Window | None:
    """A window from ROW COL HEIGHT WIDTH flags."""
    if values is None:
        return None
    row, col, height, width = values
    if row < 0 or col < 0 or height <= 0 or width <= 0:
        raise InvalidArgumentError(f"--window {row} {col} {height} {width}: needs row, col >= 0 and a positive size")
    return Window(col, row, width, height)


def extract(args: argparse.Namespace) -> Path:
    window = window_of(args.window)
    if args.from_npy:
        if not args.tile:
            raise InvalidArgumentError("--from_npy needs --tile (the .npy layout does not name its tile)")
        out = import_npy(
            args.from_npy,
            args.out,
            tile=args.tile,
            bands=S2_BANDS_10M + S2_BANDS_20M,
            nodata=S2_NODATA,
            overwrite=args.overwrite,
        )
    else:
        if not args.s2_dir:
            raise InvalidArgumentError("give --s2_dir (a tile folder of prepared products) or --from_npy")
        products = [product for folder in args.s2_dir for product in prepared_s2_series(folder)]
        if not products:
            raise InputNotFoundError(args.s2_dir[0], "prepared Sentinel-2 product (folder with a completion marker)")
        with PreparedS2Series(products) as source:
            out = extract_series(
                [source], args.out, window=window, reference_year=args.reference_year, overwrite=args.overwrite
            )
        window = None
    if args.export_npy:
        export_npy(SeriesStore(out), args.export_npy, window=window)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud sits-extract",
        description="Per-pixel time series (10 bands on the 10 m grid, validity from CLM/EDG/no-data, day numbers "
        "from 1 January of the season's first year) of a tile's prepared Sentinel-2 products, into a chunked Zarr "
        "store; or the .npy layout (bands, masks, doys, band_mean, band_std) of a small area, both ways.",
    )
    parser.add_argument("--s2_dir", nargs="+", help="tile folder(s) of prepared Sentinel-2 products (one tile)")
    parser.add_argument("--from_npy", help="folder of the .npy layout to import instead of --s2_dir")
    parser.add_argument("--tile", help="tile name of the --from_npy series (e.g. T31TEJ)")
    parser.add_argument("--out", required=True, help="the store to write (a folder, e.g. T31TEJ.zarr)")
    parser.add_argument(
        "--window",
        nargs=4,
        type=int,
        metavar=("ROW", "COL", "HEIGHT", "WIDTH"),
        help="extract only this window of the tile (10 m pixels); with --export_npy, export only it",
    )
    parser.add_argument(
        "--reference_year", type=int, help="year whose 1 January is day 1 (default: the year of the earliest product)"
    )
    parser.add_argument("--export_npy", help="also write the .npy layout of the store into this new folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), extract, argv)


if __name__ == "__main__":
    sys.exit(main())
