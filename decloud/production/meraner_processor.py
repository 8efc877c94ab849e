"""Reconstruct one Sentinel-2 image with a Meraner model (S1 and the cloudy S2 of the same date).

    python -m decloud.production.meraner_processor --il_s1 S1... --in_s2 S2 [--dem DEM] --savedmodel MODEL \\
        --output OUT.tif
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack

from decloud.core.cli import run_command
from decloud.core.products import s1_image, s2_product
from decloud.production.processors import (
    LoadedModel,
    add_inference_flags,
    add_model_flags,
    inference_options,
    meraner_sources,
    output_paths,
    reconstruct,
    reference_grid,
)


def run(args: argparse.Namespace) -> None:
    output, output_20m = output_paths(args)
    options = inference_options(args)
    target = s2_product(args.in_s2)
    reference = reference_grid(target)
    model = LoadedModel.load(args.savedmodel)
    options = model.options_for(options)
    with ExitStack() as stack:
        sources = meraner_sources(stack, target, [s1_image(p) for p in args.il_s1], args.dem, reference, options)
        reconstruct(model, sources, reference, output, output_20m, options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud meraner-processor",
        description="Reconstruct a Sentinel-2 image with a Meraner model from prepared S1 and S2 products.",
    )
    parser.add_argument("--il_s1", nargs="+", required=True, help="prepared S1 images around the date (mosaicked)")
    parser.add_argument("--in_s2", required=True, help="prepared S2 product to reconstruct (gives the output grid)")
    add_model_flags(parser)
    add_inference_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
