"""Evaluate a SavedModel on test records against baselines: ``python -m decloud.models.model_evaluation``
(or ``decloud evaluate``).

    decloud evaluate --savedmodel savedmodel/ --test_records test/ --output metrics.json

Prints the overall metrics of the model, linear gap-filling and copy-of-the-nearest-date side by side, and
writes per-band and overall metrics to the JSON file.
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
from decloud.models.evaluation import evaluate, format_table

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud evaluate",
        description="Per-band and overall metrics (MAE, MSE, PSNR, SSIM, SAM) of a SavedModel on test records, "
        "side by side with linear gap-filling and copy of the nearest date.",
    )
    parser.add_argument("--savedmodel", type=Path, required=True, help="SavedModel folder")
    parser.add_argument("--test_records", type=Path, required=True, help="test records folder")
    parser.add_argument("--output", type=Path, help="JSON file to write the metrics to")
    parser.add_argument("-b", "--batch_size", type=int, default=8, help="samples per batch (default 8)")
    parser.add_argument("--overwrite", action="store_true", help="evaluate again when --output was already written")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise InvalidArgumentError(f"--batch_size must be positive, not {args.batch_size}")
    if args.output is not None and not outputs_to_write([args.output], args.overwrite):
        log.info(skip_message([args.output]))
        print(format_table(json.loads(args.output.read_text())))
        return
    report = evaluate(args.savedmodel, args.test_records, args.batch_size)
    print(format_table(report))
    if args.output is not None:
        with atomic_file(args.output) as temporary:
            temporary.write_text(json.dumps({**report, SIGNATURE_KEY: decloud.__version__}, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
