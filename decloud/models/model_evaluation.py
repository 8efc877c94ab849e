"""Evaluate a SavedModel on test records against baselines: ``python -m decloud.models.model_evaluation``
(or ``decloud evaluate``).

    decloud evaluate --savedmodel savedmodel/ --test_records test/ --s2_root prepared/S2 --output metrics.json

Prints the overall scores (MAE, RMSE, PSNR from the pooled MSE, SSIM, SAM) of the model and of the baselines side
by side, on the hole pixels of same-date-truth records, and writes per-band and overall scores to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import decloud
from decloud.core.atomic import SIGNATURE_KEY, atomic_file, outputs_to_write, skip_message
from decloud.core.cli import run_command
from decloud.core.errors import InvalidArgumentError
from decloud.core.paths import require_output_file
from decloud.models.record_scoring import evaluate, evaluator_of, format_table

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud evaluate",
        description="Per-band and overall scores (MAE, RMSE, PSNR from the pooled MSE, SSIM, SAM) of a SavedModel "
        "on test records, side by side with linear gap-filling and copy of the nearest clear observation; records "
        "of same-date truth (transplanted cloud masks) are scored on their hole pixels only (super-resolution "
        "models: under the Wald protocol, beside bicubic upsampling, with FRR / FRO / FRU).",
    )
    parser.add_argument("--savedmodel", type=Path, required=True, help="SavedModel folder")
    parser.add_argument("--test_records", type=Path, required=True, help="test records folder")
    parser.add_argument(
        "--s2_root",
        type=Path,
        help="folder of the tiles' prepared S2 products (<s2_root>/<TILE>/...): baselines from the whole series "
        "with the cloud masks (gap-filling over the series and over the model's input dates, nearest clear "
        "observation); without it, baselines from the records' own inputs",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write the metrics to")
    parser.add_argument("-b", "--batch_size", type=int, default=8, help="samples per batch (default 8)")
    parser.add_argument(
        "--allow_partial",
        action="store_true",
        help="evaluate on the complete samples of a folder whose shards hold fewer than its summary.json says "
        "(a loud warning instead of an error)",
    )
    parser.add_argument("--overwrite", action="store_true", help="evaluate again when --output was already written")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise InvalidArgumentError(f"--batch_size must be positive, not {args.batch_size}")
    system_evaluation = evaluator_of(args.savedmodel)
    table = format_table if system_evaluation is None else system_evaluation[1]
    if args.output is not None:
        require_output_file(args.output, "--output metrics file")
        if not outputs_to_write([args.output], args.overwrite):
            log.info(skip_message([args.output]))
            print(table(json.loads(args.output.read_text())))
            return
    if system_evaluation is None:
        report = evaluate(
            args.savedmodel, args.test_records, args.batch_size, args.s2_root, allow_partial=args.allow_partial
        )
    else:
        report = system_evaluation[0](args.savedmodel, args.test_records, args.batch_size)
    print(table(report))
    if args.output is not None:
        with atomic_file(args.output) as temporary:
            temporary.write_text(json.dumps({**report, SIGNATURE_KEY: decloud.__version__}, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
