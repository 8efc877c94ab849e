"""``decloud sits-embed``: the embedding GeoTIFF of a series store (or a window of it) through a trained encoder,
with its principal-component false colour (GeoTIFF + PNG quicklook).

    decloud sits-embed --encoder encoder/ --store T31TEJ.zarr --out T31TEJ_embedding.tif [--dtype int8]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from decloud.core.cli import run_command
from decloud.sits.extract import window_of
from decloud.sits.maps import EMBEDDING_TYPES, MAP_WINDOW, embed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud sits-embed",
        description="Embedding map of a series store through a trained time-series encoder, window by window: one "
        "band per dimension, int8 with per-band scale/offset (GeoTIFF scale and offset, no-data -128) or float32; "
        "plus <stem>_pca.tif and <stem>_pca.png, the first three principal components as false colour.",
    )
    parser.add_argument("--encoder", required=True, help="folder written by decloud sits-pretrain")
    parser.add_argument("--store", required=True, help="series store written by decloud sits-extract")
    parser.add_argument("--out", required=True, help="embedding GeoTIFF to write")
    parser.add_argument("--dtype", choices=EMBEDDING_TYPES, default="int8", help="type of the embedding values")
    parser.add_argument(
        "--window", nargs=4, type=int, metavar=("ROW", "COL", "HEIGHT", "WIDTH"), help="only this window of the store"
    )
    parser.add_argument("--no_pca", action="store_true", help="do not write the false-colour GeoTIFF and PNG")
    parser.add_argument(
        "--ts", type=int, default=MAP_WINDOW, help="side of the windows streamed through the network (pixels)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def run(args: argparse.Namespace) -> None:
    embed(
        args.encoder,
        args.store,
        args.out,
        dtype=args.dtype,
        window=window_of(args.window),
        pca=not args.no_pca,
        chunk_size=args.ts,
        overwrite=args.overwrite,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
