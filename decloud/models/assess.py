"""Score reconstructed GeoTIFFs against a truth GeoTIFF on the pixels of a mask: ``decloud assess`` (or
``python -m decloud.models.assess``).

    decloud assess --prediction model.tif gapfilled.tif --truth truth.tif --mask holes.tif --output metrics.json

Prints MAE, RMSE, PSNR (from the pooled MSE), SSIM and SAM of every prediction on the mask's pixels (non-zero),
and the seam figure (mean absolute gradient across the mask's boundary) of each prediction and of the truth.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from decloud.core.atomic import atomic_file
from decloud.core.cli import run_command
from decloud.models.raster_assessment import assess_rasters
from decloud.models.scores import format_scores


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud assess",
        description="MAE, RMSE, PSNR (pooled MSE), SSIM and SAM of reconstructed rasters against a truth raster on "
        "the pixels of a mask (non-zero), and the seam figure (mean absolute gradient across the mask boundary) "
        "of each raster and of the truth. Values in prepared units (reflectance x 10000, no-data -10000).",
    )
    parser.add_argument("--prediction", type=Path, nargs="+", required=True, help="reconstructed raster(s)")
    parser.add_argument("--truth", type=Path, required=True, help="truth raster (same grid and bands)")
    parser.add_argument("--mask", type=Path, required=True, help="mask raster: non-zero = pixel to score")
    parser.add_argument("--output", type=Path, help="JSON file to write the scores to")
    return parser


def _run(args: argparse.Namespace) -> None:
    report = assess_rasters(args.prediction, args.truth, args.mask)
    print(format_scores(report["methods"], f"scores on {report['pixels']} masked pixels vs {args.truth}"))
    seams = ", ".join(f"{name} {value:.5g}" for name, value in report["seam_gradient"].items() if value is not None)
    print(f"seam gradient (mean |difference| across the mask boundary): {seams}")
    if args.output is not None:
        with atomic_file(args.output) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
