"""Reconstruct one Sentinel-2 image with a CRGA model (OS1: the S1/S2 pair before the date; OS2: before and
after), from prepared products.

    python -m decloud.production.crga_processor --il_s1before S1... --il_s2before S2... --il_s1 S1... \\
        --in_s2 S2 [--il_s1after S1... --il_s2after S2...] [--dem DEM] --savedmodel MODEL --output OUT.tif
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack

from decloud.core.cli import run_command
from decloud.core.errors import InvalidArgumentError
from decloud.core.products import S1Image, s1_image, s2_product
from decloud.production.processors import (
    LoadedModel,
    add_inference_flags,
    add_model_flags,
    crga_sources,
    inference_options,
    output_paths,
    reconstruct,
    reference_grid,
)


def _images(paths: list[str] | None) -> list[S1Image] | None:
    return None if paths is None else [s1_image(path) for path in paths]


def run(args: argparse.Namespace) -> None:
    with_s1 = bool(args.il_s1before or args.il_s1 or args.il_s1after)  # an S1 + S2 model: S1 for every date
    complete = args.il_s1before and args.il_s1 and bool(args.il_s1after) == bool(args.il_s2after)
    if with_s1 and not complete:
        raise InvalidArgumentError(
            "an S1 + S2 model needs --il_s1before, --il_s1, and --il_s1after with --il_s2after (OS2); "
            "an S2-only model takes no S1 list"
        )
    output, output_20m = output_paths(args)
    options = inference_options(args)
    target = s2_product(args.in_s2)
    reference = reference_grid(target)
    before = ([s2_product(p) for p in args.il_s2before], _images(args.il_s1before))
    after = ([s2_product(p) for p in args.il_s2after], _images(args.il_s1after)) if args.il_s2after else None
    model = LoadedModel.load(args.savedmodel)  # the inputs' names and grids first: they are checked in no time
    options = model.options_for(options)
    with ExitStack() as stack:
        sources = crga_sources(stack, target, before, _images(args.il_s1), after, args.dem, reference, options)
        reconstruct(model, sources, reference, output, output_20m, options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud crga-processor",
        description="Reconstruct a Sentinel-2 image with a CRGA model from prepared S1 and S2 products.",
    )
    parser.add_argument("--il_s1before", nargs="+", help="prepared S1 images before the date (S1 + S2 models)")
    parser.add_argument("--il_s2before", nargs="+", required=True, help="prepared S2 products before the date")
    parser.add_argument("--il_s1", nargs="+", help="prepared S1 images around the date, mosaicked (S1 + S2 models)")
    parser.add_argument("--in_s2", required=True, help="prepared S2 product to reconstruct (gives the output grid)")
    parser.add_argument("--il_s1after", nargs="+", help="prepared S1 images after the date (OS2 models)")
    parser.add_argument("--il_s2after", nargs="+", help="prepared S2 products after the date (OS2 models)")
    add_model_flags(parser)
    add_inference_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
