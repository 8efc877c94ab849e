"""``decloud demo``: the whole chain on a synthetic tile, with no data of the user's (see :mod:`decloud.demo`).

    decloud demo [--out decloud_demo] [--seed 0]

Writes a folder published when complete (in place of an empty or absent one, or of an earlier demo with
--overwrite), prints the metrics table (the model against linear gap-filling and copying the nearest
date), and lists every file written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported: no C++ start-up chatter

from decloud.core.cli import run_command
from decloud.demo.pipeline import DemoPaths, format_result, run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud demo",
        description="Run the whole chain on a generated tile (no data needed): prepare S2, S1 and DEM, split "
        "ROIs, write TFRecords, train a small CRGA model, reconstruct the time series, and write the "
        "reconstructions, a quicklook PNG (cloudy input | reconstruction | truth | absolute error) and metrics.json.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("decloud_demo"), help="output folder, empty or absent (decloud_demo)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene, the split and the training (0)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller tile, fewer samples and training steps (under a minute; for tests: the metrics mean little)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a demo folder already written")
    return parser


def _run(args: argparse.Namespace) -> None:
    logging.getLogger("pyogrio").setLevel(logging.WARNING)  # one line per ROI polygon written says nothing
    result = run_demo(args.out, seed=args.seed, quick=args.quick, overwrite=args.overwrite)
    paths = DemoPaths(Path(args.out).absolute())
    notes = {
        paths.quicklook: "quicklook: cloudy input | reconstruction | truth | absolute error",
        paths.metrics: "metrics",
    }
    print(
        format_result(
            result, lambda path: notes.get(path, "reconstruction" if path.parent == paths.reconstructed else "")
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
