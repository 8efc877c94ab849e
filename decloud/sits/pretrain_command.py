"""``decloud sits-pretrain``: Barlow Twins pretraining of a per-pixel time-series encoder from a series store.

decloud sits-pretrain --store T31TEJ.zarr --out encoder/ [--backbone transformer] [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from decloud.core.cli import run_command
from decloud.models.training_loop import STRATEGIES
from decloud.sits.flags import add_encoder_training_flags, encoder_training_values
from decloud.sits.pretrain import PretrainConfig, pretrain


def build_parser() -> argparse.ArgumentParser:
    defaults = PretrainConfig(store=Path(), out_dir=Path())
    parser = argparse.ArgumentParser(
        prog="decloud sits-pretrain",
        description="Self-supervised (Barlow Twins) pretraining of a per-pixel time-series encoder on the series "
        "of a store: two random subsets of each pixel's valid dates are driven to the same embedding. Writes "
        "encoder.keras and sits_encoder.json (bands, normalisation, view length, day-number convention).",
    )
    parser.add_argument("--store", required=True, help="series store written by decloud sits-extract")
    parser.add_argument("--out", required=True, help="folder of the trained encoder")
    parser.add_argument("--source", default=defaults.source, help="source of the store to train on")
    parser.add_argument(
        "--projector",
        type=int,
        default=defaults.projector,
        help="width of the projector MLP (0: none, the loss decorrelates the representation itself)",
    )
    parser.add_argument(
        "--view_length",
        type=int,
        default=defaults.view_length,
        help="observations per view (pixels with fewer valid dates get padded views)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=defaults.noise,
        help="Gaussian jitter of the view values, in band standard deviations",
    )
    parser.add_argument(
        "--brightness",
        type=float,
        default=defaults.brightness,
        help="relative standard deviation of a factor multiplying all values of a view (brightness jitter)",
    )
    parser.add_argument(
        "--lambda",
        dest="redundancy_weight",
        type=float,
        default=defaults.redundancy_weight,
        help="weight of the off-diagonal (redundancy) terms of the loss",
    )
    parser.add_argument("--logdir", help="TensorBoard folder (loss and effective rank per epoch)")
    parser.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy)
    parser.add_argument("--steps_per_epoch", type=int, default=defaults.steps_per_epoch)
    add_encoder_training_flags(parser, defaults)
    return parser


def run(args: argparse.Namespace) -> None:
    config = PretrainConfig(
        store=Path(args.store),
        out_dir=Path(args.out),
        source=args.source,
        projector=args.projector,
        view_length=args.view_length,
        noise=args.noise,
        brightness=args.brightness,
        redundancy_weight=args.redundancy_weight,
        steps_per_epoch=args.steps_per_epoch,
        logdir=Path(args.logdir) if args.logdir else None,
        strategy=args.strategy,
        **encoder_training_values(args),
    )
    pretrain(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
