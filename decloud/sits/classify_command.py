"""``decloud sits-classify``: the class map of a series store through a classifier of ``decloud sits-finetune``.

decloud sits-classify --classifier eval/ --store T31TEJ.zarr --out T31TEJ_classes.tif
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from decloud.core.cli import run_command
from decloud.sits.extract import window_of
from decloud.sits.maps import MAP_WINDOW, classify


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud sits-classify",
        description="Class map of a series store, window by window: uint8, class k is the k-th class of the "
        "classifier (names in the CLASSES tag), 0 no-data (no valid observation), with a colour table.",
    )
    parser.add_argument("--classifier", required=True, help="output folder of decloud sits-finetune")
    parser.add_argument("--store", required=True, help="series store written by decloud sits-extract")
    parser.add_argument("--out", required=True, help="class map GeoTIFF to write")
    parser.add_argument(
        "--window", nargs=4, type=int, metavar=("ROW", "COL", "HEIGHT", "WIDTH"), help="only this window of the store"
    )
    parser.add_argument(
        "--ts", type=int, default=MAP_WINDOW, help="side of the windows streamed through the network (pixels)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def run(args: argparse.Namespace) -> None:
    window = window_of(args.window)
    classify(args.classifier, args.store, args.out, window=window, chunk_size=args.ts, overwrite=args.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
