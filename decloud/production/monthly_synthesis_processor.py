"""A cloud-free synthesis of one month from six of its Sentinel-2 images (and S1 images for the S2+S1
models), with a monthly synthesis model.

    python -m decloud.production.monthly_synthesis_processor --il_s2 S2... [--il_s1 S1...] --year 2020 \\
        --month 6 --savedmodel MODEL --output OUT.tif
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack

from decloud.core import keys
from decloud.core.cli import run_command
from decloud.core.products import s1_image, s2_product
from decloud.production.processors import (
    LoadedModel,
    add_inference_flags,
    add_model_flags,
    inference_options,
    month_products,
    monthly_sources,
    output_paths,
    reconstruct,
    reference_grid,
)


def run(args: argparse.Namespace) -> None:
    output, output_20m = output_paths(args)
    options = inference_options(args)
    products = month_products([s2_product(p) for p in args.il_s2], args.year, args.month)
    s1_images = [s1_image(p) for p in args.il_s1] if args.il_s1 else None
    reference = reference_grid(products[0])
    model = LoadedModel.load(args.savedmodel)
    with ExitStack() as stack:
        sources = monthly_sources(stack, products, s1_images, args.dem, reference, options)
        dates = [keys.key(keys.S2, f"d{index}") for index in range(len(products))]
        # A synthesis pixel exists wherever one of the dates sees the ground.
        reconstruct(
            model, sources, reference, output, output_20m, options,
            keep_acquisition=None, any_of=dates, required=(),
        )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud monthly-synthesis-processor",
        description="Synthesise a cloud-free image of a month from six of its prepared Sentinel-2 products.",
    )
    parser.add_argument("--il_s2", nargs="+", required=True, help="prepared S2 products (six of the month are used)")
    parser.add_argument("--il_s1", nargs="+", help="prepared S1 images (S2+S1 models)")
    parser.add_argument("--year", type=int, required=True)
    parser.add_argument("--month", type=int, required=True, choices=range(1, 13), metavar="1-12")
    add_model_flags(parser, "synthesis,")
    add_inference_flags(parser, keep_clear=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
