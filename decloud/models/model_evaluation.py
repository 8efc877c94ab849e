"""Evaluate a SavedModel on test records against baselines: ``python -m decloud.models.model_evaluation``
(or ``decloud evaluate``).

    decloud evaluate --savedmodel savedmodel/ --test_records test/ --output metrics.json

Prints the overall metrics of the model, linear gap-filling and copy-of-the-nearest-date side by side, and
writes per-band and overall metrics to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from decloud.core.atomic import atomic_file
from decloud.core.cli import run_command
from decloud.core.errors import InvalidArgumentError
from decloud.models.evaluation import evaluate, evaluator_of, format_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud evaluate",
        description="Per-band and overall metrics (MAE, MSE, PSNR, SSIM, SAM) of a SavedModel on test records, "
        "side by side with linear gap-filling and copy of the nearest date (super-resolution models: under the "
        "Wald protocol, beside bicubic upsampling, with FRR / FRO / FRU).",
    )
    parser.add_argument("--savedmodel", type=Path, required=True, help="SavedModel folder")
    parser.add_argument("--test_records", type=Path, required=True, help="test records folder")
    parser.add_argument("--output", type=Path, help="JSON file to write the metrics to")
    parser.add_argument("-b", "--batch_size", type=int, default=8, help="samples per batch (default 8)")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise InvalidArgumentError(f"--batch_size must be positive, not {args.batch_size}")
    evaluate_records, table = evaluator_of(args.savedmodel) or (evaluate, format_table)
    report = evaluate_records(args.savedmodel, args.test_records, args.batch_size)
    print(table(report))
    if args.output is not None:
        with atomic_file(args.output) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
