"""Train a model from TFRecords: ``python -m decloud.models.train_from_tfrecords`` (or ``decloud train``).

    decloud train --training_record train/ --valid_records valid/ minitrain/ --model crga_os2_unet \\
        -lr 0.0002 -bt 4 -bv 4 -e 200 --save_ckpt_dir ckpt/ --logdir logs/ --out_savedmodel savedmodel/

Started again with the same --save_ckpt_dir, a killed run resumes after its last finished epoch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from decloud.core.cli import run_command
from decloud.models.losses import LOSSES
from decloud.models.training_loop import STRATEGIES, TrainingConfig, parse_model_params, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decloud train",
        description="Train a decloud model from TFRecords, validate it on one or more records folders, "
        "save checkpoints and TensorBoard logs, and export a SavedModel.",
    )
    parser.add_argument("--training_record", type=Path, help="training records folder")
    parser.add_argument("--valid_records", type=Path, nargs="+", default=[], help="validation records folder(s)")
    parser.add_argument("-m", "--model", required=True, help="registered model name (e.g. crga_os2_unet)")
    parser.add_argument(
        "--model_params", help='architecture parameters as a JSON object, e.g. \'{"filters": 64, "depth": 5}\''
    )
    parser.add_argument("--with_20m_bands", action="store_true", help="also read and estimate the 20 m bands")
    parser.add_argument("--with_dem", action="store_true", help="also read the DEM")
    parser.add_argument(
        "--model_module", action="append", default=[], help="module to import that registers more models (repeatable)"
    )
    parser.add_argument("-lr", "--learning_rate", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    parser.add_argument("-bt", "--batch_size_train", type=int, default=4, help="training batch size per replica")
    parser.add_argument("-bv", "--batch_size_valid", type=int, default=4, help="validation batch size per replica")
    parser.add_argument("-e", "--epochs", type=int, default=1, help="total number of epochs (default 1)")
    parser.add_argument("--steps_per_epoch", type=int, help="steps per epoch (default: one pass over the records)")
    parser.add_argument("--save_ckpt_dir", type=Path, help="where checkpoints are saved after each epoch")
    parser.add_argument("--load_ckpt_dir", type=Path, help="checkpoint folder to resume from, or a .weights.h5 file")
    parser.add_argument("--logdir", type=Path, help="TensorBoard log folder")
    parser.add_argument("--out_savedmodel", type=Path, help="export the trained model as a SavedModel here")
    parser.add_argument("--overwrite", action="store_true", help="replace an --out_savedmodel written by decloud")
    parser.add_argument("--previews", action="store_true", help="write preview images to TensorBoard each epoch")
    parser.add_argument("--all_metrics", action="store_true", help="also compute SSIM and SAM (besides MAE, MSE, PSNR)")
    parser.add_argument("--valid_only", action="store_true", help="only validate the checkpoint's weights")
    parser.add_argument("--strategy", choices=STRATEGIES, default="single", help="tf.distribute strategy")
    parser.add_argument(
        "--collective_timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="multiworker: how long a worker waits for the others before failing, naming the lost one (600)",
    )
    parser.add_argument(
        "--early_stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs without progress"
    )
    parser.add_argument("--save_best", action="store_true", help="keep the best epoch's weights and export those")
    parser.add_argument("--seed", type=int, help="seed of weights initialisation and shuffling")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="masked_l1", help="training loss")
    parser.add_argument(
        "--hole_margin",
        type=int,
        help="records of same-date truth: the loss counts only the holes and this many pixels around them "
        "(the processors keep the clear pixels beyond --keep_clear's blend zone, 6 pixels); default: every pixel",
    )
    parser.add_argument(
        "--allow_partial",
        action="store_true",
        help="train on the complete samples of records folders whose shards hold fewer than their summary.json "
        "says (a loud warning instead of an error)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    params = parse_model_params(args.model_params)
    params.update({name: True for name in ("with_20m_bands", "with_dem") if getattr(args, name)})
    return TrainingConfig(
        model=args.model,
        training_record=args.training_record,
        valid_records=args.valid_records,
        model_params=params,
        model_modules=args.model_module,
        learning_rate=args.learning_rate,
        batch_train=args.batch_size_train,
        batch_valid=args.batch_size_valid,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        save_ckpt_dir=args.save_ckpt_dir,
        load_ckpt_dir=args.load_ckpt_dir,
        logdir=args.logdir,
        out_savedmodel=args.out_savedmodel,
        overwrite=args.overwrite,
        previews=args.previews,
        all_metrics=args.all_metrics,
        valid_only=args.valid_only,
        strategy=args.strategy,
        collective_timeout=args.collective_timeout,
        early_stopping=args.early_stopping,
        save_best=args.save_best,
        seed=args.seed,
        loss=args.loss,
        hole_margin=args.hole_margin,
        allow_partial=args.allow_partial,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), lambda args: train(config_from_args(args)), argv)


if __name__ == "__main__":
    sys.exit(main())
