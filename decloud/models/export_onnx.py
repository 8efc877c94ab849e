"""Convert a decloud SavedModel to ONNX: ``python -m decloud.models.export_onnx`` (or ``decloud export-onnx``).

    decloud export-onnx --savedmodel savedmodel/ --output model.onnx

Writes ``model.onnx`` and ``model.json`` (inputs, scaling, band order, size multiple, receptive field and
the margin to use when tiling), after checking that ONNX and SavedModel agree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from decloud.core.cli import run_command
from decloud.models.onnx_conversion import DEFAULT_OPSET, export_onnx


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud export-onnx", description="Convert a decloud SavedModel to ONNX, with a metadata JSON file."
    )
    parser.add_argument("--savedmodel", type=Path, required=True, help="SavedModel folder")
    parser.add_argument("--output", type=Path, required=True, help="ONNX file to write (metadata: same name, .json)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--overwrite", action="store_true", help="replace an export already written by decloud")
    return parser


def _run(args: argparse.Namespace) -> None:
    export_onnx(args.savedmodel, args.output, args.opset, overwrite=args.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
