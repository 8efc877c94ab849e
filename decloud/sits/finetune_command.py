"""``decloud sits-finetune``: classifiers of a series store's pixels trained on labelled parcels (linear probe and
fine-tuning of a pretrained encoder, the same network from scratch, random forest and logistic regression on the
raw series), scored on held-out parcels.

    decloud sits-finetune --store T31TEJ.zarr --encoder encoder/ --labels parcels.gpkg --class_field crop --out eval/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from decloud.core.cli import run_command
from decloud.sits.finetune import METHODS, FinetuneConfig, evaluate
from decloud.sits.flags import add_encoder_training_flags, encoder_training_values
from decloud.sits.losses import CLASSIFICATION_LOSSES


def build_parser() -> argparse.ArgumentParser:
    defaults = FinetuneConfig(store=Path(), labels=Path(), out_dir=Path())
    parser = argparse.ArgumentParser(
        prog="decloud sits-finetune",
        description="Train classifiers of the store's pixels on labelled parcels and score them on held-out parcels "
        "(split by parcel, never by pixel): overall accuracy, macro F1, F1 per class, confusion matrices. Writes "
        "metrics.json, confusion_<method>.png and the best encoder-based classifier (for decloud sits-classify).",
    )
    parser.add_argument("--store", required=True, help="series store written by decloud sits-extract")
    parser.add_argument(
        "--labels", required=True, help="class raster (0 or no-data: unlabelled) or polygons (.gpkg, .shp, .geojson...)"
    )
    parser.add_argument("--class_field", help="class field of the polygons (required for a vector file)")
    parser.add_argument("--encoder", help="pretrained encoder folder (decloud sits-pretrain)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--test_share",
        type=float,
        default=defaults.test_share,
        help="share of each class's parcels held out for testing",
    )
    parser.add_argument(
        "--labelled_share",
        type=float,
        default=defaults.labelled_share,
        help="share of the other parcels used for training (at least one per class)",
    )
    parser.add_argument(
        "--validation_share",
        type=float,
        default=defaults.validation_share,
        help="share of each class's training parcels (when it has two or more) kept for validation: the network "
        "methods keep the weights of their epoch of lowest validation loss (0: no validation)",
    )
    parser.add_argument(
        "--loss", choices=CLASSIFICATION_LOSSES, default=defaults.loss, help="loss of the network methods"
    )
    parser.add_argument("--focal_gamma", type=float, default=defaults.focal_gamma, help="gamma of the focal loss")
    parser.add_argument("--max_pixels_per_parcel", type=int, default=defaults.max_pixels_per_parcel)
    add_encoder_training_flags(
        parser,
        defaults,
        encoder_help="the architecture is that of the scratch network without --encoder (with one: the encoder's)",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    evaluate(
        FinetuneConfig(
            store=Path(args.store),
            labels=Path(args.labels),
            out_dir=Path(args.out),
            encoder=Path(args.encoder) if args.encoder else None,
            class_field=args.class_field,
            methods=tuple(args.methods),
            test_share=args.test_share,
            labelled_share=args.labelled_share,
            validation_share=args.validation_share,
            loss=args.loss,
            focal_gamma=args.focal_gamma,
            max_pixels_per_parcel=args.max_pixels_per_parcel,
            **encoder_training_values(args),
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
